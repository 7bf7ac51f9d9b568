"""Why no placement fits: what each constraint rejects, with the fact behind it, and the one
change that would help most (``relaxation_gains``: candidates allowed when that constraint alone
is dropped). The planner raises these as ``InfeasibleError``; the batch planner shortens them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from carbonsched.errors import InfeasibleError
from carbonsched.policies import relaxation_gains
from carbonsched.units import hours_between

if TYPE_CHECKING:
    from carbonsched.planning.candidates import JobCandidates

CONSTRAINT_HINTS = {
    "gpu_type": "accept more GPU types (constraints.gpu_types / --accept-gpu)",
    "gpu_count": "allow other GPU counts per instance (constraints.gpu_counts)",
    "provider": "allow more providers (constraints.providers)",
    "region": "widen constraints.regions",
    "exclude_regions": "exclude fewer regions (constraints.exclude_regions)",
    "min_gpu_memory_gb": "lower constraints.min_gpu_memory_gb",
    "max_delay": "allow a longer delay (window.max_delay)",
    "deadline": "move window.deadline later",
    "max_usd_per_hour": "raise constraints.max_usd_per_hour",
    "max_total_usd": "raise constraints.max_total_usd",
    "carbon_budget_kg": "raise constraints.carbon_budget_kg",
    "quota": "request a GPU quota increase (AWS Service Quotas / GCP IAM & Admin > Quotas) or allow other regions or GPU types",
    "max_runtime": "accept faster GPUs or more GPUs per instance (runs over a year are not planned)",
}


def filtered_prefix(eliminated: dict[str, int], total: int) -> str:
    parts = [f"{name} rejects {count:,}" for name, count in sorted(eliminated.items(), key=lambda kv: -kv[1]) if count]
    return f"of {total:,} candidates, " + "; ".join(parts) + "; of the rest, " if parts else ""


def infeasible_message(eliminated: dict[str, int], total: int, facts: dict[str, str], gains: dict[str, int],
                        prefix: str = "") -> str:
    """One line: what each constraint rejects (with the relevant fact) and which single change helps."""
    parts = []
    for name, count in sorted(eliminated.items(), key=lambda kv: -kv[1]):
        if count:
            fact = f" ({facts[name]})" if facts.get(name) else ""
            parts.append(f"{name} rejects {count:,}{fact}")
    helpful = {k: v for k, v in gains.items() if v > 0}
    if helpful:
        best = max(helpful, key=helpful.get)
        hint = f"; to fix: {CONSTRAINT_HINTS.get(best, 'relax ' + best)} (alone that allows {helpful[best]:,} candidates)"
    else:
        rejecting = [k for k in gains if eliminated.get(k)]
        hint = "; no single change suffices: " + "; ".join(CONSTRAINT_HINTS.get(k, "relax " + k) for k in rejecting)
    return (f"no placement satisfies the constraints: {prefix}{total:,} candidates (offering x start): "
            + "; ".join(parts) + hint)


def infeasible_error(jc: JobCandidates) -> InfeasibleError:
    """The InfeasibleError explaining an empty ``jc.feasible`` (what rejects what, which change helps)."""
    cands, window = jc.cands, jc.window
    facts = {
        "deadline": f"fastest run takes {cands.runtime_h.min():.1f} h; the window leaves "
                    f"{hours_between(window.earliest, window.deadline):.1f} h" if window.deadline else "",
        "max_usd_per_hour": f"cheapest is ${cands.usd_per_hour.min():.2f}/h",
        "max_total_usd": f"cheapest run costs ${cands.cost_usd.min():.2f}",
        "carbon_budget_kg": f"lowest achievable is {cands.kg_co2e.min():.1f} kg",
        "min_gpu_memory_gb": f"largest GPU memory offered is {cands.gpu_memory_gb.max():.0f} GB",
    }
    return InfeasibleError(infeasible_message(jc.numeric_elim, jc.n_remaining, facts, relaxation_gains(cands, jc.limits),
                                               prefix=filtered_prefix(jc.eliminated, jc.n_total)),
                           {**jc.eliminated, **jc.numeric_elim})
