"""Disclosure of a tracked run's emissions: Markdown or LaTeX to paste into a paper or model card,
and a machine-readable JSON record (``schema`` ``carbonsched.disclosure``, ``schema_version`` 1).

Everything comes from a ``Ledger`` (``carbonsched.measure.ledger``) and its measurement record; the text
states hardware, hours, provider/region, energy and how it was obtained, PUE, kgCO2e with the
intensity's source, kind and signal, the embodied share, the saving against the baseline, the
plan's forecast error, and the uncertainty. Output is deterministic (no generation timestamp),
so it can be checked into a repository and diffed.
"""
from __future__ import annotations

import json

from carbonsched import __version__
from carbonsched.errors import UnknownNameError
from carbonsched.measure.ledger import Ledger
from carbonsched.refdata import resolve_region

SCHEMA = "carbonsched.disclosure"
SCHEMA_VERSION = 1
FORMATS = ("md", "latex", "json")
PROVIDERS = {"aws": "Amazon Web Services", "gcp": "Google Cloud"}
METHODS = {
    "nvml-energy": "NVML total-energy counters",
    "nvml-power": "NVML power readings integrated over time",
    "nvml-mixed": "NVML energy counters and power readings",
    "nvml": "NVML",
    "rapl": "RAPL package energy counters",
    "model": "carbonsched's power model",
    "none": "not measured",
}
SIGNALS = {"average-lca": "average, lifecycle", "average-direct": "average, direct emissions", "marginal": "marginal"}


def _f(x: float, digits: int) -> str:
    """Fixed ``digits`` decimals; 3 significant digits for values that would print as zero."""
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:.3g}"
    return f"{x:,.{digits}f}"


def disclosure(ledger: Ledger, record: dict) -> dict:
    """The facts of the disclosure, with the numbers rounded as they are printed."""
    provider = ledger.region_id.split(":", 1)[0]
    share = ledger.kg_co2e_embodied / ledger.kg_co2e * 100 if ledger.kg_co2e > 0 else 0.0
    ran = record.get("ran_on") or {}
    here = ran.get("where") == "this machine"
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "job_id": ledger.job_id,
        "hardware": {"gpu": ledger.gpu_name, "gpu_count": ledger.gpu_count, "host": record.get("host", {}),
                     "gpu_source": ran.get("gpu_source") or _gpu_source(record.get("gpu") or {}),
                     "instance_type": ran.get("instance_type")},
        "ran_on": ("this machine" if here else ran.get("where") or None),
        "provider": "this machine" if here else PROVIDERS.get(provider, provider),
        "region_id": ledger.region_id, "location": ledger.location,
        "modelled": modelled_quantities(ledger, record),
        "started_at": ledger.to_dict()["started_at"], "ended_at": ledger.to_dict()["ended_at"],
        "wall_hours": ledger.wall_hours, "gpu_hours": ledger.wall_hours * ledger.gpu_count,
        "energy": {"it_kwh": ledger.it_energy_kwh, "facility_kwh": ledger.facility_energy_kwh, "pue": ledger.pue,
                   "methods": dict(ledger.energy_methods),
                   "parts_kwh": {k: record[k]["energy_kwh"] for k in ("gpu", "cpu", "memory")}},
        "intensity": {"g_per_kwh": ledger.intensity_g_per_kwh, "source": ledger.intensity_source,
                      "kind": ledger.intensity_kind, "signal": ledger.intensity_signal, "weighting": "energy per hour"},
        "emissions": {"kg_co2e_operational": ledger.kg_co2e_operational, "kg_co2e_embodied": ledger.kg_co2e_embodied,
                      "kg_co2e": ledger.kg_co2e, "embodied_share_pct": share},
        "baseline": ledger.baseline, "forecast": ledger.forecast, "energy_estimate": ledger.energy_estimate,
        "uncertainty": ledger.uncertainty, "warnings": list(ledger.warnings),
        "method": (("measured" if any(v not in ("model", "none") for v in ledger.energy_methods.values()) else
                    "estimated from the power model (no energy counter was readable)")
                   + f" with carbonsched {__version__} (carbonsched track); emissions = energy per hour x PUE x "
                   "grid intensity of that hour, plus embodied GPU emissions amortised over their service life"),
        "exit_code": record.get("exit_code"),
        "provider_published": None if here else _provider_facts(ledger.region_id),  # no provider's figure for this machine
    }


def _gpu_source(gpu: dict) -> str | None:
    """Where the GPUs named came from: NVML when it was read; a modelled GPU (the placement's,
    or ``--gpu``) is not an NVML reading."""
    if not gpu.get("devices"):
        return None
    return "nvml" if gpu.get("method") not in ("model", "none") else "given"  # --gpu, or the job's spec


def modelled_quantities(ledger: Ledger, record: dict) -> list[str]:
    """The numbers of the disclosure that came from a model, not a meter (each is marked in the text)."""
    out = [f"{k} energy" for k in ("gpu", "cpu", "memory") if ledger.energy_methods.get(k) == "model"
           and float(record[k]["energy_kwh"]) > 0]
    if (record.get("ran_on") or {}).get("gpu_source") == "placement":
        out.append("gpu count (the placement's; no NVML reading)")
    if ledger.kg_co2e_embodied > 0:
        out.append("embodied emissions")
    if "history" not in ledger.intensity_kind.split("+"):
        out.append("grid intensity (a forecast, not the grid's history)")
    elif ledger.intensity_kind != "history":
        out.append("grid intensity in part (some hours are a forecast)")
    return out


def _provider_facts(region_id: str | None) -> dict | None:
    """The provider's own published figures for the region (labelled; never part of kgCO2e)."""
    try:
        return resolve_region(region_id).provider_facts() if region_id else None
    except UnknownNameError:
        return None


def _methods_phrase(d: dict) -> str:
    m = d["energy"]["methods"]
    return (f"GPU: {METHODS.get(m['gpu'], m['gpu'])}; CPU: {METHODS.get(m['cpu'], m['cpu'])}; "
            f"memory: {METHODS.get(m['memory'], m['memory'])}")


def _mark(d: dict, quantity: str) -> str:
    """`` (modelled)`` after a number that came from a model."""
    return " (modelled)" if any(q.startswith(quantity) for q in d.get("modelled") or []) else ""


def _where(d: dict) -> str:
    if d.get("ran_on") == "this machine":
        host = (d["hardware"].get("host") or {}).get("hostname")
        return (f"this machine{' (' + host + ')' if host else ''}; grid region {d['region_id']}, {d['location']}")
    return f"{d['provider']}, region {d['region_id']}, {d['location']}"


def _sentences(d: dict, co2: str, tilde: str, pm: str) -> list[str]:
    """The disclosure as sentences; ``co2`` spells CO2e, ``tilde`` a non-breaking space, ``pm`` plus-minus."""
    hw = f"{d['hardware']['gpu_count']}x {d['hardware']['gpu']}" if d["hardware"]["gpu_count"] else "CPU only"
    e, i, em = d["energy"], d["intensity"], d["emissions"]
    unc = d["uncertainty"].get("total_rel", 0.0) * 100
    gpu_hours = f" ({_f(d['gpu_hours'], 2)} GPU-hours)" if d["hardware"]["gpu_count"] else ""
    facility = (f"{_f(e['facility_kwh'], 3)}{tilde}kWh with the data centre's PUE of {e['pue']:g}"
                if d.get("ran_on") != "this machine" else "no data-centre overhead (PUE) applied on this machine")
    embodied = (f", plus {_f(em['kg_co2e_embodied'], 3)}{tilde}kg{co2} embodied in the GPUs{_mark(d, 'embodied')} "
                f"({_f(em['embodied_share_pct'], 1)}{tilde}% of the total)" if d["hardware"]["gpu_count"] else "")
    out = [
        f"Training ran on {hw}{_mark(d, 'gpu count')} ({_where(d)}) for "
        f"{_f(d['wall_hours'], 2)}{tilde}h{gpu_hours}, from {d['started_at']} to {d['ended_at']}.",
        f"It used {_f(e['it_kwh'], 3)}{tilde}kWh of IT energy ({_methods_phrase(d)}), {facility}.",
        f"At a grid carbon intensity of {_f(i['g_per_kwh'], 1)}{tilde}g{co2}/kWh "
        f"({SIGNALS.get(i['signal'], i['signal'])}; {i['kind']} from {i['source']}, weighted by the energy used in each hour), "
        f"this emitted {_f(em['kg_co2e_operational'], 3)}{tilde}kg{co2}{embodied}: "
        f"{_f(em['kg_co2e'], 3)}{tilde}kg{co2} in all ({pm}{_f(unc, 0)}{tilde}%).",
    ]
    b = d.get("baseline")
    if b and b.get("saving_pct") is not None:
        word = "less" if b["saving_pct"] >= 0 else "more"
        out.append(f"Running in the default region ({b['region_id']}) at the same time would have emitted "
                   f"{_f(b['kg_co2e'], 3)}{tilde}kg{co2}; this placement emitted {_f(abs(b['saving_pct']), 1)}{tilde}% {word}.")
    f = d.get("forecast")
    if f and f.get("error_pct") is not None:
        def pct(key):
            return "n/a" if f.get(key) is None else f"{f[key]:+.1f}{tilde}%"

        out.append(f"The plan had forecast {_f(f['kg_co2e'], 3)}{tilde}kg{co2} "
                   f"(actual {pct('error_pct')}: energy {pct('energy_error_pct')}, intensity {pct('intensity_error_pct')}).")
        delay = f.get("start_delay_hours")
        if f.get("run_window_forecast_g_per_kwh") is not None and delay is not None and abs(delay) >= 0.05:
            out.append(f"It started {_f(abs(delay), 2)}{tilde}h {'after' if delay > 0 else 'before'} its planned start; "
                       f"over the hours it really ran the plan's forecast was {_f(f['run_window_forecast_g_per_kwh'], 1)}"
                       f"{tilde}g{co2}/kWh (intensity {pct('run_window_intensity_error_pct')}).")
    pp = d.get("provider_published")
    if pp and pp.get("published_g_per_kwh") is not None:
        cfe = (f" and a carbon-free energy share of {pp['cfe_pct']:.0f}{tilde}% (market-based: clean energy bought "
               "and matched hour by hour; it does not change the grid figures above)") if pp.get("cfe_pct") is not None else ""
        out.append(f"For comparison, {d['provider']} publishes a location-based grid intensity of "
                   f"{_f(pp['published_g_per_kwh'], 1)}{tilde}g{co2}/kWh for this region ({pp.get('year')}, yearly, "
                   f"direct emissions){cfe}.")
    out.append(f"Emissions were {d['method']}.")
    if d.get("modelled"):
        out.append("Modelled rather than metered: " + "; ".join(d["modelled"]) + ".")
    return out


def render_markdown(d: dict) -> str:
    text = " ".join(_sentences(d, "CO2e", " ", "±"))
    e, em, i = d["energy"], d["emissions"], d["intensity"]
    hw = f"{d['hardware']['gpu_count']}x {d['hardware']['gpu']}" if d["hardware"]["gpu_count"] else "CPU only"
    parts = ", ".join(f"{label} {_f(e['parts_kwh'][k], 3)}{_mark(d, k + ' energy')}"
                      for k, label in (("gpu", "GPU"), ("cpu", "CPU"), ("memory", "memory")))
    rows = [
        ("hardware", hw + _mark(d, "gpu count")),
        ("provider / region", f"{d['provider']} / {d['region_id']}"),
        ("wall time", f"{_f(d['wall_hours'], 2)} h"),
        ("IT energy", f"{_f(e['it_kwh'], 3)} kWh ({parts})"),
        ("PUE", f"{e['pue']:g}"),
        ("intensity", f"{_f(i['g_per_kwh'], 1)} gCO2e/kWh ({i['signal']}, {i['kind']}, {i['source']})"),
        ("operational", f"{_f(em['kg_co2e_operational'], 3)} kgCO2e"),
        ("embodied", f"{_f(em['kg_co2e_embodied'], 3)} kgCO2e ({_f(em['embodied_share_pct'], 1)} %){_mark(d, 'embodied')}"),
        ("total", f"{_f(em['kg_co2e'], 3)} kgCO2e ± {_f(d['uncertainty'].get('total_rel', 0) * 100, 0)} %"),
    ]
    if d.get("baseline"):
        rows.append(("baseline", f"{_f(d['baseline']['kg_co2e'], 3)} kgCO2e in {d['baseline']['region_id']}"))
    if d.get("forecast"):
        rows.append(("forecast", f"{_f(d['forecast']['kg_co2e'], 3)} kgCO2e (error {d['forecast']['error_pct']:+.1f} %)"))
    table = "\n".join(["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    notes = "".join(f"\n- {w}" for w in d["warnings"])
    return (f"### Carbon emissions\n\n{text}\n\n{table}\n"
            f"\nUncertainty: {d['uncertainty'].get('note', '')}.\n" + (f"\nNotes:{notes}\n" if notes else ""))


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}"}  # "~" stays: the sentences use it as a non-breaking space


def _latex_escape(text: str) -> str:
    """Escape LaTeX specials in one pass (so the braces of \\textbackslash{} are not escaped again)."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def render_latex(d: dict) -> str:
    body = _latex_escape(" ".join(_sentences(d, "CO2e", "~", "PLUSMINUS")))
    body = body.replace("CO2e", r"CO$_2$e").replace("PLUSMINUS", r"$\pm$")
    return f"\\subsection*{{Carbon emissions}}\n{body}\n"


def render_json(d: dict) -> str:
    return json.dumps(d, indent=2) + "\n"


def render(d: dict, fmt: str) -> str:
    return {"md": render_markdown, "latex": render_latex, "json": render_json}[fmt](d)
