"""The package's own import graph, read from the source (no import is executed).

Used by the layering test and by the check that every ``dvc.yaml`` stage depends on each file
its code imports. Imports anywhere in a module count (also those inside functions), since a
stage runs them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "asymsr"


def module_files(root: Path) -> dict[str, Path]:
    """``asymsr.x.y`` -> its file, for every module under ``root`` (the ``asymsr`` package folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path], top_level: bool = False) -> set[str]:
    """The package modules that ``path`` imports (``from a.b import c`` counts ``a.b.c`` if it is a module).

    ``top_level``: only the imports that run when the module is imported (not those in functions).
    """
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    nodes = _module_level(tree) if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """The statements that run at import: the module body, descending into if/try/with, not into defs."""
    pending: list[ast.AST] = list(tree.body)
    found: list[ast.AST] = []
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                pending.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            pending.extend(node.body)
    return found


def with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__`` first."""
    parts = name.split(".")
    return [".".join(parts[: index + 1]) for index in range(len(parts))]


def closure(start: list[str], modules: dict[str, Path], top_level: bool = False) -> set[str]:
    """Every package module that importing ``start`` can run.

    A module's own imports are followed (only those made at import time when ``top_level``);
    of the packages above it only the import-time ones, since importing ``a.b.c`` runs the
    ``__init__`` of ``a`` and ``a.b`` but none of their functions.
    """
    seen: dict[str, bool] = {}  # module -> whether its function-level imports were followed
    todo = [(name, top_level) for name in start]
    while todo:
        name, shallow = todo.pop()
        if name not in modules or (name in seen and (seen[name] or shallow)):
            continue
        seen[name] = not shallow
        todo.extend((parent, True) for parent in with_parents(name)[:-1])
        todo.extend((imported, shallow) for imported in imports_of(modules[name], modules, shallow))
    return set(seen)


def stage_code(stage_module: str, root: Path) -> list[Path]:
    """The source files ``asymsr <stage>`` can run: all of the stage module's imports, and the
    CLI's import-time ones (it imports no other stage). Sorted paths under ``root``'s parent."""
    modules = module_files(root)
    names = closure([stage_module], modules) | closure(["asymsr.cli"], modules, top_level=True)
    return sorted(modules[name] for name in names)


DATA_FILES = {"asymsr.nn.native": "kernels"}  # module -> folder beside it that it reads (C sources)


def stage_deps(stage_module: str, root: Path) -> list[str]:
    """``dvc.yaml`` deps for the code of a stage: :func:`stage_code` plus the data its modules read,
    with a subpackage folder in place of its files when the stage uses every one of them."""
    files = stage_code(stage_module, root)
    modules = {path: name for name, path in module_files(root).items()}
    extra = [modules[path] for path in files if modules[path] in DATA_FILES]
    deps: list[Path] = []
    for folder in sorted({path.parent for path in files}):
        inside = [path for path in files if path.parent == folder]
        everything = sorted(folder.glob("*.py"))
        whole = (
            folder != root
            and inside == everything
            and not any(p.is_dir() for p in folder.iterdir() if p.name != "__pycache__")
        )
        deps.extend([folder] if whole else inside)
    deps.extend(module_files(root)[name].parent / DATA_FILES[name] for name in extra)
    return sorted(str(path) for path in deps)
