"""The ``asymsr`` command line: one sub-command per stage, built from the stages' argument models.

No stage logic lives here. Each sub-command's flags are the fields of its ``Args`` model
(:mod:`asymsr.stages`): the flag is the field name with dashes, the help text is the field's
description, the default is the field's default, and the type decides the form (a boolean is
``--flag/--no-flag``, a literal gives choices, a list is comma-separated unless it repeats). The
parsed values are validated by the model, so a bad value gets the schema's message.

Errors that a user can fix (bad paths, corrupt files, wrong values) are printed as one
``asymsr: error: ...`` line with exit status 2; set ``ASYMSR_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from asymsr.schema.params import problems
from asymsr.stages import STAGES, load, user_errors

FLATTENED = "__flattened__"  # namespace key: which flattened model each flag belongs to


def _hints(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return dict(extra.get("cli", {})) if isinstance(extra, dict) else {}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``Annotated`` metadata and ``| None``, whether None is allowed)."""
    optional = False
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if typing.get_origin(annotation) in (types.UnionType, typing.Union):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) < len(typing.get_args(annotation)):
                optional = True
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, optional


def _base_type(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _scalar(kind: Any, optional: bool) -> Any:
    """An argparse ``type`` for one value; "none" means None where None is allowed."""
    kind = _base_type(kind)
    convert = kind if kind in (int, float, str, Path) else str

    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {getattr(convert, '__name__', 'a value')}, got {text!r}"
            ) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _comma_list(kind: Any) -> Any:
    item = _scalar(kind, optional=False)

    def parse(text: str) -> list[Any]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of values, got {text!r}")
        return values

    return parse


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r} ({error.msg})") from None


def _help(info: FieldInfo) -> str:
    text = (info.description or "").replace("%", "%%")
    hints = _hints(info)
    default = hints["default"] if "default" in hints else info.get_default(call_default_factory=True)
    if info.is_required() or default in (None, False, "", [], {}):
        return text
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    return f"{text} (default: {shown})"


def _options(name: str, info: FieldInfo) -> tuple[list[str], dict[str, Any]]:
    """The argparse name(s) and keyword arguments of one field."""
    hints = _hints(info)
    annotation, optional = _unwrap(info.annotation)
    origin = typing.get_origin(_base_type(annotation))
    options: dict[str, Any] = {"help": _help(info), "default": argparse.SUPPRESS, "dest": name}
    if "metavar" in hints:
        options["metavar"] = hints["metavar"]
    if hints.get("positional"):
        options.pop("dest")
        if origin is list:
            options.update(nargs="+", type=_scalar(typing.get_args(annotation)[0], False))
        else:
            options.update(nargs="?" if not info.is_required() else None, type=_scalar(annotation, optional))
        return [name], options
    flags = ["--" + name.replace("_", "-")]
    if info.is_required():
        options["required"] = True
    if annotation is not bool and typing.get_origin(annotation) is not typing.Literal:
        options.setdefault("metavar", name.upper())
    if annotation is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(annotation) is typing.Literal:
        options["choices"] = typing.get_args(annotation)
    elif hints.get("text"):
        options["type"] = str
    elif origin is list and hints.get("repeat"):
        options.update(action="append", type=_scalar(typing.get_args(annotation)[0], False))
    elif origin is list:
        options["type"] = _comma_list(typing.get_args(_base_type(annotation))[0])
    elif origin is dict:
        options.update(type=_json, metavar=options.get("metavar", "JSON"))
    else:
        options["type"] = _scalar(annotation, optional)
    return flags, options


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel], into: str | None = None) -> None:
    """One argument per field of ``model``; a ``flatten`` field adds its own model's fields instead."""
    for name, info in model.model_fields.items():
        if _hints(info).get("flatten"):
            add_arguments(parser, _unwrap(info.annotation)[0], into=name)
            continue
        flags, options = _options(name, info)
        if into is not None:
            options["dest"] = f"{into}.{name}"
        parser.add_argument(*flags, **options)


def collect(values: dict[str, Any]) -> dict[str, Any]:
    """Parsed values with the flattened ones (``field.sub``) gathered into their field."""
    gathered: dict[str, Any] = {}
    for key, value in values.items():
        outer, dot, inner = key.partition(".")
        if dot:
            gathered.setdefault(outer, {})[inner] = value
        else:
            gathered[key] = value
    return gathered


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``only`` the full parser of that one command
    (the others by name), so that running a stage imports no other stage's module."""
    parser = argparse.ArgumentParser(
        prog="asymsr", description="Train, evaluate and ship VDSR / Asym_VDSR super-resolution models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGES:
        if only is not None and name != only:
            commands.add_parser(name)
            continue
        stage = load(name)
        sub = commands.add_parser(name, help=stage.HELP, description=stage.HELP)
        add_arguments(sub, stage.Args)
    return parser


def _flag(loc: tuple[Any, ...]) -> str:
    """The flag a validation error is about (``--lr``), or its dotted key."""
    names = [str(part) for part in loc if not isinstance(part, int)]
    return "--" + names[-1].replace("_", "-") if names else "arguments"


def argument_problems(error: ValidationError) -> str:
    """One line naming each refused flag, its problem and the value given."""
    items = []
    for item in error.errors():
        given = "" if item["type"] == "missing" or isinstance(item["input"], dict) else f" (got {item['input']!r})"
        items.append(f"{_flag(item['loc'])}: {item['msg'].removeprefix('Value error, ')}{given}")
    return "; ".join(items)


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, BaseModel]:
    """(command, its validated ``Args``). A malformed command line exits 2 with argparse's message;
    a value the stage's schema refuses raises :class:`ValueError` naming the flag."""
    argv = list(sys.argv[1:] if argv is None else argv)
    requested = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(only=requested if requested in STAGES else None)
    namespace = vars(parser.parse_args(argv))
    command = namespace.pop("command")
    try:
        return command, load(command).Args.model_validate(collect(namespace))
    except ValidationError as error:
        raise ValueError(argument_problems(error)) from None


def _how_to_continue(argv: Sequence[str] | None, args: BaseModel | None) -> str:
    """For the commands that checkpoint: how to pick up where an interrupt left off."""
    words = list(sys.argv[1:] if argv is None else argv)
    out = getattr(args, "out", None)
    if not words or words[0] not in ("train", "compress") or out is None:
        return ""
    if not (Path(out) / "checkpoint.pt").is_file():
        return f"; no checkpoint was written to {out} yet: run the same command again to start over"
    again = shlex.join(["asymsr", *words, *([] if "--resume" in words else ["--resume"])])
    return f"; {out}/checkpoint.pt holds the last finished epoch: continue with `{again}`"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asymsr`` command; returns the exit status."""
    args = None
    try:
        command, args = parse_args(argv)
        result = load(command).run(args)
    except KeyboardInterrupt:
        print(f"asymsr: interrupted{_how_to_continue(argv, args)}", file=sys.stderr)
        return 130  # the shell's convention for SIGINT
    except user_errors() as error:
        if os.environ.get("ASYMSR_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, ValidationError):  # pydantic's own text spans several lines
            message = problems(error)
        print(f"asymsr: error: {message}", file=sys.stderr)
        return 2
    if result is not None:
        text = result.describe()
        if text:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
