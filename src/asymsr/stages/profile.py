"""``asymsr profile``: make ``params.yaml`` a profile from ``profiles/``, optionally with overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import field_validator

from asymsr.schema.params import activate_profile, load_params, profiles_dir, resolve_profile
from asymsr.stages._base import StageArgs, StageResult, arg

NAME = "profile"
HELP = "Switch params.yaml to a profile from profiles/ (quick, paper), validated, optionally with overrides."


class Args(StageArgs):
    name: str = arg(..., "profile name: a file PROFILES/NAME.yaml", positional=True)
    profiles: Path | None = arg(None, "folder of profiles (default: $ASYMSR_PROFILES, else ./profiles)")
    target: Path = arg(Path("params.yaml"), "parameters file to write")
    overrides: dict[str, Any] = arg(
        {}, 'JSON merged into the profile, e.g. \'{"tune": {"trials": 8}}\' (written as YAML; no comments kept)'
    )

    @field_validator("overrides", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return json.loads(value or "{}") if isinstance(value, str) else value


class Result(StageResult):
    name: str
    source: Path
    target: Path
    experiment: str

    def describe(self) -> str:
        return f"{self.target} is now profile {self.name!r} (from {self.source}); run `dvc repro`"


def run(args: Args) -> Result:
    folder = args.profiles or profiles_dir()
    if args.overrides:
        params = resolve_profile(args.name, args.overrides, args.target, profiles=folder)
    else:  # a verbatim copy keeps the profile's comments
        activate_profile(args.name, profiles=folder, target=args.target)
        params = load_params(args.target)
    source = folder / f"{args.name}.yaml"
    return Result(name=args.name, source=source, target=args.target, experiment=params.registry.experiment)
