"""The package's shape: imports point down the layers, and every dvc.yaml stage depends on its code."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from asymsr.stages import STAGES
from asymsr.util.imports import closure, imports_of, module_files, stage_code

REPO = Path(__file__).resolve().parents[3]
ROOT = REPO / "src" / "asymsr"
# lowest first: a module may import its own subpackage and those before it, never one after it
LAYERS = ["util", "sr", "nn", "schema", "data", "eval", "mlops", "training", "bench", "stages", "cli"]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def subpackage_edges(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(importing layer, imported layer) -> the module imports that make the edge."""
    modules = module_files(root)
    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in modules.items():
        for imported in imports_of(path, modules):
            key = (layer(name), layer(imported))
            if key[0] != key[1]:
                edges.setdefault(key, []).append(f"{name} -> {imported}")
    return edges


def test_every_module_is_in_a_known_layer():
    unknown = {layer(name) for name in module_files(ROOT)} - {*LAYERS, "root"}
    assert not unknown, f"subpackages missing from LAYERS: {sorted(unknown)}"


def upward_imports(root: Path = ROOT) -> list[str]:
    return [
        edge
        for (source, target), found in subpackage_edges(root).items()
        if "root" not in (source, target) and LAYERS.index(target) > LAYERS.index(source)
        for edge in found
    ]


def test_imports_point_down_the_layers():
    upward = upward_imports()
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_cycle_between_subpackages():
    graph: dict[str, set[str]] = {}
    for source, target in subpackage_edges():
        graph.setdefault(source, set()).add(target)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            assert cycle is None, f"cycle between subpackages: {' -> '.join(cycle)}"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The check above can fail: a copy of the package with one upward import is caught."""
    copy = tmp_path / "asymsr"
    for path in ROOT.rglob("*.py"):
        target = copy / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    color = copy / "sr" / "color.py"
    color.write_text(color.read_text() + "\n\ndef _late():\n    from asymsr.mlops import tracking  # noqa\n")
    assert set(upward_imports(copy)) == {"asymsr.sr.color -> asymsr.mlops", "asymsr.sr.color -> asymsr.mlops.tracking"}


def test_the_schema_and_the_cli_load_without_torch():
    modules = module_files(ROOT)
    loaded = closure(["asymsr.cli"], modules, top_level=True)
    heavy = [name for name in loaded if re.search(r"\bimport torch\b", modules[name].read_text().split('"""')[-1])]
    assert not heavy, f"modules imported at CLI start-up that import torch: {heavy}"


def test_function_level_imports_count():
    modules = module_files(ROOT)
    assert "asymsr.training.loop" in imports_of(modules["asymsr.stages.train"], modules)
    assert "asymsr.training.loop" not in imports_of(modules["asymsr.stages.train"], modules, top_level=True)


# ---------------------------------------------------------------- dvc.yaml deps


def dvc_stages() -> dict[str, dict]:
    """Stage name -> definition, with foreach stages expanded to their ``do`` block."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == REPO / dep or (REPO / dep) in path.parents for dep in deps)


def test_each_stage_depends_on_the_code_it_imports():
    for name, stage in dvc_stages().items():
        command = stage["cmd"].split()[1]
        assert command in STAGES, f"dvc.yaml stage {name}: `asymsr {command}` is not a stage"
        deps = [dep for dep in stage["deps"] if dep.startswith("src/")]
        missing = [str(path.relative_to(REPO)) for path in stage_code(STAGES[command], ROOT) if not covered(path, deps)]
        assert not missing, f"dvc.yaml stage {name} does not depend on code it runs: {missing}; run `make deps`"
        stale = [dep for dep in deps if not (REPO / dep).exists()]
        assert not stale, f"dvc.yaml stage {name} depends on files that do not exist: {stale}"


def test_the_committed_dvc_yaml_is_what_make_deps_writes():
    spec = importlib.util.spec_from_file_location("dvc_deps", REPO / "tools" / "dvc_deps.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    _, changes = tool.rewrite((REPO / "dvc.yaml").read_text())
    assert changes == [], "run `make deps`: " + "; ".join(changes)


def test_protocol_is_a_dependency_of_every_stage_that_scores():
    protocol = REPO / "src" / "asymsr" / "sr" / "protocol.py"
    for name, stage in dvc_stages().items():
        if name in ("tune", "train", "evaluate", "evaluate_bicubic", "prepare"):
            assert covered(protocol, [d for d in stage["deps"] if d.startswith("src/")]), name
