"""The package's import graph runs one way and has no cycles (docs/architecture.md, ADR 0001).

Layers, lowest first; a module may import its own layer and those below, never above:

    shared     carbonsched (errors, units, settings, refdata, models, fileio), carbonsched.data
    policies   carbonsched.policies          pure decision logic
    providers  carbonsched.providers         the outside world (clouds, grids, launchers)
    spec       carbonsched.spec              what the user asks
    planning   carbonsched.planning          candidates -> estimates -> ranking -> Plan
    run        carbonsched.run               store, submit, agent, waiting for a window
    measure    carbonsched.measure           energy, tracker, ledger, report
    integrations carbonsched.integrations    MLOps pipelines: MLflow, GitHub Action, Airflow, ...
    server     carbonsched.server            the HTTP API over all of the above
    cli        carbonsched.cli, __main__     nothing imports it

Checked on the source (AST), so a violation fails here even if no test happens to import the
module: every ``import``/``from ... import`` of a carbonsched module, at the top of a file or
inside a function, counts; only ``if TYPE_CHECKING:`` blocks (annotations, no run-time edge) do
not. Also checked: no cycle among modules, no private name (``_x``) imported from another
module, and imports inside functions only where listed in ``LAZY_ALLOWED`` (registries that load
an implementation only when it is chosen) or in cli/ (commands load only what they need).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE_DIRS = {"carbonsched": "scheduler", "carbonsched.providers": "providers",
                "carbonsched.policies": "policies", "carbonsched.data": "data"}

LAYERS = [
    ("shared", ("carbonsched", "carbonsched.data")),
    ("policies", ("carbonsched.policies",)),
    ("providers", ("carbonsched.providers",)),
    ("spec", ("carbonsched.spec",)),
    ("planning", ("carbonsched.planning",)),
    ("run", ("carbonsched.run",)),
    ("measure", ("carbonsched.measure",)),
    ("integrations", ("carbonsched.integrations",)),
    ("server", ("carbonsched.server",)),
    ("cli", ("carbonsched.cli", "carbonsched.__main__")),
]

# (importing module, imported module): imports allowed inside functions outside cli/
LAZY_ALLOWED = {
    # offering sources: each SDK loads only when its source is chosen
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.catalog"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.aws"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.gcp"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.cache"),
    # intensity sources
    ("carbonsched.providers.grid", "carbonsched.providers.grid.electricitymaps"),
    ("carbonsched.providers.grid", "carbonsched.providers.grid.watttime"),
    ("carbonsched.providers.grid", "carbonsched.providers.grid.ukci"),
    ("carbonsched.providers.grid", "carbonsched.providers.grid.file"),
    # the statistical forecaster: fitted only when a live forecast falls short of the window
    ("carbonsched.providers.grid.chain", "carbonsched.providers.grid.forecaster"),
    # planners: the interruptible one (and its DP) loads only for jobs with [interruptible]
    ("carbonsched.planning", "carbonsched.planning.interruptible"),
    # launchers
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.local"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.aws_launch"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.gcp_launch"),
    ("carbonsched.providers.cloud", "carbonsched.providers.cloud.skypilot"),
    # a Kubeflow Pipelines component's body runs alone in its pod (KFP ships the function's source):
    # its imports must be inside it
    ("carbonsched.integrations.kfp", "carbonsched.integrations.placement"),
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    names: tuple[str, ...]
    lazy: bool
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    root = {v: k for k, v in PACKAGE_DIRS.items()}[rel.parts[0]]
    parts = list(rel.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join([root, *parts])


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for n in ast.walk(node))
    return out


def edges_of(path: Path, known: set[str]) -> list[Edge]:
    return edges_in(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py", known)


def edges_in(text: str, source: str, is_package: bool, known: set[str]) -> list[Edge]:
    tree = ast.parse(text)
    package = source if is_package else source.rpartition(".")[0]
    skip, top = _type_checking_nodes(tree), {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("carbonsched"):
                continue
            names = tuple(a.name for a in node.names)
            # `from carbonsched.spec import job` imports the module carbonsched.spec.job
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            for sub in submodules:
                out.append(Edge(source, sub, (), id(node) not in top, node.lineno))
            rest = tuple(n for n in names if f"{target}.{n}" not in known)
            if rest or not submodules:
                out.append(Edge(source, target, rest, id(node) not in top, node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("carbonsched"):
                    out.append(Edge(source, a.name, (), id(node) not in top, node.lineno))
    return out


def package_files() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS.values() for p in (REPO / d).rglob("*.py"))


@pytest.fixture(scope="module")
def graph() -> list[Edge]:
    files = package_files()
    known = {module_name(p) for p in files}
    return [e for p in files for e in edges_of(p, known)]


def test_every_module_has_a_layer():
    for p in package_files():
        layer_of(module_name(p))


def test_imports_run_one_way(graph):
    against = [f"{e.source} ({LAYERS[layer_of(e.source)][0]}) imports {e.target} ({LAYERS[layer_of(e.target)][0]}), "
               f"line {e.line}" for e in graph if layer_of(e.target) > layer_of(e.source)]
    assert against == []


def test_no_import_cycles(graph):
    deps: dict[str, set[str]] = {}
    for e in graph:
        if e.source != e.target:
            deps.setdefault(e.source, set()).add(e.target)
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(deps):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_no_private_names_across_modules(graph):
    private = [f"{e.source} imports {n} from {e.target}, line {e.line}"
               for e in graph for n in e.names if n.startswith("_") and n != "__version__"]
    assert private == []


def test_imports_inside_functions_only_where_allowed(graph):
    lazy = [f"{e.source} imports {e.target} inside a function, line {e.line}" for e in graph
            if e.lazy and not e.source.startswith("carbonsched.cli") and (e.source, e.target) not in LAZY_ALLOWED]
    assert lazy == []


def test_the_checker_sees_violations():
    """The rules above would fail on the defects they exist for (a checker that finds nothing
    proves nothing)."""
    known = {module_name(p) for p in package_files()}
    probe = ("from typing import TYPE_CHECKING\n"
             "from carbonsched.cli.render import table\n"
             "if TYPE_CHECKING:\n    from carbonsched.run.store import Job\n"
             "def f():\n    from carbonsched.planning.candidates import _speeds\n"
             "from .job import JobSpec\n")
    edges = edges_in(probe, "carbonsched.spec.probe", False, known)
    assert "carbonsched.spec.job" in {e.target for e in edges}  # relative imports resolved
    assert "carbonsched.run.store" not in {e.target for e in edges}  # annotations only
    up = [e for e in edges if layer_of(e.target) > layer_of(e.source)]
    assert {e.target for e in up} == {"carbonsched.cli.render", "carbonsched.planning.candidates"}
    assert any(n.startswith("_") for e in edges for n in e.names)
    assert any(e.lazy for e in edges)


def test_the_runner_process_stays_light(graph):
    """``python -m carbonsched.runner`` starts once per local job: it may import only the standard
    library and ``carbonsched.fileio`` (a package import would pull numpy into every job)."""
    assert {e.target for e in graph if e.source == "carbonsched.runner"} <= {"carbonsched.fileio"}
    code = ("import sys, carbonsched.runner; "
            "print(sorted(m for m in sys.modules if m.startswith('carbonsched') or m == 'numpy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['carbonsched', 'carbonsched.fileio', 'carbonsched.runner']"
