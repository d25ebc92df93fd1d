"""Keep the code deps of every ``dvc.yaml`` stage equal to the import closure of its stage module.

In ``dvc.yaml`` each stage's code deps follow a comment ``# code of asymsr.stages.<name>``; this
script computes them (:func:`asymsr.util.imports.stage_deps`) and either checks them
(``--check``: exit 1 and name the differences) or rewrites those lines in place (``--write``,
comments and everything else untouched). ``make deps`` runs ``--write``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from asymsr.util.imports import stage_deps  # noqa: E402

MARKER = re.compile(r"^(?P<indent>\s*)# code of (?P<module>asymsr\.stages\.\w+)")


def rewrite(text: str) -> tuple[str, list[str]]:
    """``text`` with every marked list recomputed, and one line per stage whose list changed."""
    lines, out, changes = text.splitlines(keepends=True), [], []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        match = MARKER.match(line)
        if not match:
            continue
        indent, module = match["indent"], match["module"]
        old = []
        while index < len(lines) and lines[index].startswith(f"{indent}- src/"):
            old.append(lines[index].strip()[2:])
            index += 1
        new = stage_deps(module, REPO / "src" / "asymsr")
        new = [str(Path(path).relative_to(REPO)) if Path(path).is_absolute() else path for path in new]
        out.extend(f"{indent}- {path}\n" for path in new)
        if old != new:
            added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            changes.append(f"{module} (line {len(out) - len(new)}): add {added}, remove {removed}")
    return "".join(out), changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml in place (default: check only)")
    parser.add_argument("--file", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args()
    text, changes = rewrite(args.file.read_text())
    if args.write:
        args.file.write_text(text)
        print(f"{args.file}: {len(changes)} stage lists updated")
        return 0
    for change in changes:
        print(f"{args.file}: stale code deps of {change}; run `make deps`", file=sys.stderr)
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
