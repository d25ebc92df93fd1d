"""What every stage shares: its arguments as a pydantic model, and how they become CLI flags.

A stage module (``asymsr.stages.<name>``) defines:

* ``NAME`` and ``HELP``: the sub-command and its one-line description;
* ``Args``: a :class:`StageArgs` model; its fields are the command's arguments, and each
  field's description is the help text of its flag (:mod:`asymsr.cli` builds the parser from it);
* ``run(args) -> Result``: the stage itself, returning a typed result whose ``describe()`` is
  what the command prints.

``dvc.yaml`` runs ``asymsr <name> ...``; a Kubeflow component builds the same ``Args`` and
calls the same ``run``. So a stage exists once, whoever starts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from asymsr.schema.params import Params, load_params


class StageArgs(BaseModel):
    """Arguments of one stage (closed: an unknown argument is an error)."""

    model_config = ConfigDict(extra="forbid")


class StageResult(BaseModel):
    """What a stage returns; ``describe()`` is the summary the command prints."""

    model_config = ConfigDict(extra="forbid")

    def describe(self) -> str:  # pragma: no cover - every stage overrides it
        raise NotImplementedError


def arg(default: Any = ..., help: str = "", *, ge: float | None = None, gt: float | None = None, **cli: Any) -> Any:
    """A stage argument: ``help`` is the flag's help text, ``ge``/``gt`` bounds, ``cli`` hints for the parser.

    Hints: ``positional=True`` (a positional argument), ``repeat=True`` (a flag given once per
    item), ``metavar="..."``, ``flatten=True`` (for a model-typed field: each of its fields is a
    flag of its own, collected into this field), ``text=True`` (the flag takes the raw text, which
    the field's validator parses).
    """
    return Field(default, description=help, ge=ge, gt=gt, json_schema_extra={"cli": cli} if cli else None)


def params_arg(required: bool = False) -> Any:
    """The ``--params`` argument of every stage that reads ``params.yaml``."""
    help_text = "pipeline parameters (params.yaml), validated before any work; flags override it"
    return arg(... if required else None, help_text, metavar="YAML")


def read_params(path: Path | None) -> Params | None:
    """The validated parameters file, or None when the stage was not given one."""
    return load_params(path) if path is not None else None


def default_of(model: type[BaseModel], name: str) -> Any:
    """The schema's default of ``model.name``, for help texts (so that a default is written once)."""
    value = model.model_fields[name].get_default(call_default_factory=True)
    return ",".join(str(item) for item in value) if isinstance(value, list) else value


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> ``{KEY: VALUE}``; a malformed or repeated key raises, naming it."""
    pairs: dict[str, str] = {}
    for text in values:
        key, separator, value = text.partition("=")
        if not separator or not key or not value:
            raise ValueError(f"{what}: expected KEY=VALUE, got {text!r}")
        if key in pairs:
            raise ValueError(f"{what}: {key!r} given twice")
        pairs[key] = value
    return pairs
