"""Submit the compiled asymsr pipeline to a Kubeflow Pipelines API.

    python -m pipelines.submit --host https://kubeflow.example.org/pipeline \\
        --param profile=paper --param architectures='["vdsr", "asym_vdsr"]' --param n_trials=16 \\
        --param params_overrides='{"train": {"seed": 1}}'

``--param KEY=VALUE`` sets one pipeline parameter. The compiled package's parameter types decide
how VALUE is read: a STRING parameter takes VALUE verbatim (so ``params_overrides`` stays a JSON
string), a number, boolean, list or struct parameter takes VALUE as JSON. Unknown names, values of
the wrong type and missing required parameters stop before anything is sent.

Authentication comes from the environment only: ``KFP_TOKEN`` (a bearer token, e.g. from
``kubectl create token`` or your identity provider) is sent when set. Secrets are never pipeline
parameters: a parameter named like a credential or a URL carrying a password is refused; the
components read credentials from Kubernetes secrets.

Exit status: 0 submitted (run id and URL printed), 2 a bad argument, a missing package or an API
that cannot be reached within ``--timeout`` seconds, 1 the API rejected the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PACKAGE = "pipelines/asym_vdsr.yaml"
TOKEN_ENV = "KFP_TOKEN"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|credential|access_key|api_key|private_key)", re.IGNORECASE)


class SubmitError(Exception):
    """A problem the user can fix, reported as one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _parse_json(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmitError(f"--param {key}: {text!r} is not valid JSON ({error.msg})") from None


def _typed_value(key: str, text: str, parameter_type: str) -> Any:
    """``text`` read as a value of a KFP parameter type (PipelineSpec ``parameterType``)."""
    if parameter_type == "STRING":
        return text
    value = _parse_json(key, text)
    expected = {
        "NUMBER_INTEGER": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "NUMBER_DOUBLE": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
        "BOOLEAN": ("true or false", lambda v: isinstance(v, bool)),
        "LIST": ("a JSON list", lambda v: isinstance(v, list)),
        "STRUCT": ("a JSON object", lambda v: isinstance(v, dict)),
    }.get(parameter_type)
    if expected is not None and not expected[1](value):
        raise SubmitError(f"--param {key}: expected {expected[0]} ({parameter_type}), got {text!r}")
    if parameter_type == "NUMBER_DOUBLE":
        return float(value)
    return value


def build_arguments(params: Iterable[str], parameter_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pipeline arguments from ``KEY=VALUE`` strings.

    Without ``parameter_types`` a VALUE that parses as JSON is that JSON value (``8`` -> 8,
    ``true`` -> True, ``["a"]`` -> ["a"]) and anything else is the string itself. With
    ``parameter_types`` (name -> PipelineSpec ``parameterType``) the key must be one of them and
    the value is read as that type: STRING verbatim, every other type as JSON of that type.
    Raises :class:`SubmitError` for a malformed item, an empty or repeated key, an unknown key or
    a value of the wrong type.
    """
    arguments: dict[str, Any] = {}
    for item in params:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _NAME.match(key):
            raise SubmitError(f"--param {item!r}: expected KEY=VALUE with KEY a parameter name")
        if key in arguments:
            raise SubmitError(f"--param {key} is given twice")
        if parameter_types is None:
            try:
                arguments[key] = json.loads(text)
            except json.JSONDecodeError:
                arguments[key] = text
            continue
        if key not in parameter_types:
            known = ", ".join(sorted(parameter_types)) or "none"
            raise SubmitError(f"--param {key}: the pipeline has no such parameter (it has: {known})")
        arguments[key] = _typed_value(key, text, parameter_types[key])
    return arguments


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
        try:  # a JSON string parameter (params_overrides) is searched inside as well
            inner = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return
        if not isinstance(inner, str):
            yield from _strings(inner)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def refuse_secrets(arguments: Mapping[str, Any]) -> None:
    """Raise :class:`SubmitError` if an argument looks like a credential (by name, or a URL with a password)."""
    for key, value in arguments.items():
        if _SECRET_NAME.search(key):
            raise SubmitError(
                f"--param {key}: credentials are not pipeline parameters (they are stored in the run's spec); "
                "give them to the components through a Kubernetes secret"
            )
        for text in _strings(value):
            for word in re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", text):
                try:
                    password = urlsplit(word).password
                except ValueError:
                    continue
                if password:
                    raise SubmitError(
                        f"--param {key}: a URL in it carries a password; pass the credentials through a "
                        "Kubernetes secret and give the URL without them"
                    )


def read_parameters(package: Path) -> tuple[dict[str, str], set[str]]:
    """The root parameters of a compiled pipeline: name -> parameterType, and the required names.

    Only YAML/JSON packages are read; for an archive (``.tar.gz``, ``.zip``) both are empty and the
    API checks the arguments instead.
    """
    if package.suffix not in (".yaml", ".yml", ".json"):
        return {}, set()
    import yaml

    try:
        with package.open(encoding="utf-8") as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except (OSError, yaml.YAMLError) as error:
        raise SubmitError(f"{package}: not a readable pipeline package ({error.__class__.__name__})") from None
    spec = documents[0] if documents else None
    if isinstance(spec, Mapping) and "pipeline_spec" in spec:
        spec = spec["pipeline_spec"]
    if not isinstance(spec, Mapping) or "root" not in spec:
        raise SubmitError(f"{package}: not a compiled pipeline (no root component); compile it with kfp first")
    parameters = (spec.get("root") or {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    types = {name: str(definition.get("parameterType", "STRING")) for name, definition in parameters.items()}
    required = {
        name
        for name, definition in parameters.items()
        if not definition.get("isOptional") and "defaultValue" not in definition
    }
    return types, required


def check_reachable(host: str, token: str | None, timeout: float) -> None:
    """GET the KFP health endpoint once, without retries, within ``timeout`` seconds per phase.

    ``kfp.Client`` has no timeout of its own and retries its health check five times, 5 s apart,
    so this bounded probe (same transport: urllib3, certifi CAs, no proxy from the environment)
    decides first whether the API is there. Raises :class:`SubmitError` (status 2) if it is not.
    """
    import certifi
    import urllib3

    url = host.rstrip("/") + HEALTHZ_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    try:
        response = pool.request(
            "GET", url, headers=headers, timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", None) or error
        raise SubmitError(f"cannot reach the KFP API at {host}: {reason.__class__.__name__}: {reason}") from None
    if response.status in (401, 403) or 300 <= response.status < 400:
        hint = "rejected the token in KFP_TOKEN" if token else f"needs authentication: set {TOKEN_ENV}"
        raise SubmitError(f"the KFP API at {host} {hint} (HTTP {response.status} for {HEALTHZ_PATH})")
    if response.status == 404:
        raise SubmitError(
            f"no KFP API at {host} (HTTP 404 for {HEALTHZ_PATH}); behind a Kubeflow dashboard it is "
            "usually https://HOST/pipeline"
        )
    if response.status >= 400:
        raise SubmitError(f"the KFP API at {host} answered HTTP {response.status} for {HEALTHZ_PATH}")


def submit(
    host: str,
    package: Path,
    arguments: Mapping[str, Any],
    *,
    experiment: str,
    run_name: str | None,
    namespace: str | None,
    token: str | None,
    ui_host: str | None = None,
) -> tuple[str, str]:
    """Create or reuse ``experiment`` and start one run of ``package``; returns (run id, run URL)."""
    import kfp
    import kfp_server_api
    import urllib3

    client_kwargs: dict[str, Any] = {"host": host, "existing_token": token, "ui_host": ui_host}
    if namespace:  # kfp.Client treats its default "kubeflow" as "not given"
        client_kwargs["namespace"] = namespace
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            client = kfp.Client(**client_kwargs)
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=dict(arguments),
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
        )
    except kfp_server_api.ApiException as error:
        raise SubmitError(
            f"the KFP API rejected the run: HTTP {error.status} {error.reason}: {_api_message(error)}", 1
        ) from None
    except (urllib3.exceptions.HTTPError, TimeoutError) as error:
        raise SubmitError(f"lost the KFP API at {host}: {error.__class__.__name__}") from None
    url = f"{(ui_host or host).rstrip('/')}/#/runs/details/{result.run_id}"
    return result.run_id, url


def _api_message(error: Exception) -> str:
    body = getattr(error, "body", None) or ""
    try:
        decoded = json.loads(body)
        message = decoded.get("message") or decoded.get("error") or body
    except (json.JSONDecodeError, AttributeError, TypeError):
        message = body
    return " ".join(str(message).split())[:300] or "(no message)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.submit",
        description="Submit the compiled asymsr pipeline to a Kubeflow Pipelines API. "
        f"Authentication: the bearer token in ${TOKEN_ENV}, if set (never on the command line).",
    )
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.org/pipeline")
    parser.add_argument("--experiment", default="asymsr", help="experiment to create or reuse (default: asymsr)")
    parser.add_argument("--run-name", help="display name of the run (default: package name and time)")
    parser.add_argument("--namespace", help="Kubernetes namespace (profile) of a multi-user deployment")
    parser.add_argument(
        "--package", default=DEFAULT_PACKAGE, help=f"compiled pipeline (default: {DEFAULT_PACKAGE})", type=Path
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter (repeatable); VALUE is JSON unless the parameter is a string",
    )
    parser.add_argument("--ui-host", help="base URL of the KFP UI for the printed link (default: --host)")
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the API to answer (default: 15)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = os.environ.get(TOKEN_ENV) or None
    try:
        if not args.package.is_file():
            raise SubmitError(
                f"pipeline package {args.package} not found; compile it first (python -m pipelines.asym_vdsr)"
            )
        types, required = read_parameters(args.package)
        arguments = build_arguments(args.param, types or None)
        missing = sorted(required - set(arguments))
        if missing:
            raise SubmitError(f"missing required pipeline parameter(s): {', '.join(missing)} (give --param KEY=VALUE)")
        refuse_secrets(arguments)
        check_reachable(args.host, token, args.timeout)
        run_id, url = submit(
            args.host,
            args.package,
            arguments,
            experiment=args.experiment,
            run_name=args.run_name,
            namespace=args.namespace,
            token=token,
            ui_host=args.ui_host,
        )
    except SubmitError as error:
        print(f"submit: error: {error}", file=sys.stderr)
        return error.status
    print(f"run id: {run_id}")
    print(f"run URL: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
