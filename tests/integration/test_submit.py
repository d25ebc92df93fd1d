"""pipelines/submit.py: typed --param parsing, refusals before anything is sent, a bounded failure on an
unreachable API, and one whole submission against a stand-in KFP API on 127.0.0.1."""

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("kfp")

from pipelines.submit import SubmitError, build_arguments, main, read_parameters, refuse_secrets  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

TYPES = {
    "profile": "STRING",
    "params_overrides": "STRING",
    "architectures": "LIST",
    "n_trials": "NUMBER_INTEGER",
    "max_psnr_drop": "NUMBER_DOUBLE",
    "use_stages": "BOOLEAN",
}


def write_package(path: Path) -> Path:
    """A small compiled pipeline with one parameter of each type the real one uses (kfp reads the
    annotations at definition time, so this module does not postpone them)."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="submit-test")
    def tiny(
        profile: str = "quick",
        params_overrides: str = "{}",
        architectures: list = ["vdsr"],  # noqa: B006 (a KFP default, not a mutable Python default)
        n_trials: int = 2,
        max_psnr_drop: float = 0.2,
        use_stages: bool = False,
    ):
        echo(text=profile)

    compiler.Compiler().compile(tiny, str(path))
    return path


def test_untyped_values_are_json_when_possible_else_strings():
    args = build_arguments(["n=8", "lr=0.1", "flag=true", 'archs=["vdsr", "asym_vdsr"]', "name=quick", "url=a=b"])
    assert args == {"n": 8, "lr": 0.1, "flag": True, "archs": ["vdsr", "asym_vdsr"], "name": "quick", "url": "a=b"}
    assert build_arguments([]) == {}


def test_typed_values_follow_the_pipeline_parameter_types():
    args = build_arguments(
        [
            'params_overrides={"train": {"seed": 1}}',
            "profile=123",
            'architectures=["asym_vdsr"]',
            "n_trials=16",
            "max_psnr_drop=1",
            "use_stages=true",
        ],
        TYPES,
    )
    # a STRING parameter keeps its text, JSON or not; a float parameter accepts an integer
    assert args == {
        "params_overrides": '{"train": {"seed": 1}}',
        "profile": "123",
        "architectures": ["asym_vdsr"],
        "n_trials": 16,
        "max_psnr_drop": 1.0,
        "use_stages": True,
    }
    assert isinstance(args["max_psnr_drop"], float)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["n_trials"], "expected KEY=VALUE"),
        (["=3"], "expected KEY=VALUE"),
        (["not-a-name=1"], "expected KEY=VALUE"),
        (["n_trials=1", "n_trials=2"], "given twice"),
        (["n_trials=eight"], "not valid JSON"),
        (["n_trials=1.5"], "expected an integer"),
        (["n_trials=true"], "expected an integer"),
        (["use_stages=1"], "expected true or false"),
        (["architectures=vdsr"], "not valid JSON"),
        (['architectures="vdsr"'], "expected a JSON list"),
        (["epochs=3"], "has no such parameter (it has: architectures, max_psnr_drop"),
    ],
)
def test_malformed_params_are_refused(items, message):
    with pytest.raises(SubmitError, match=message.replace("(", r"\(")):
        build_arguments(items, TYPES)


def test_credentials_are_never_pipeline_parameters():
    with pytest.raises(SubmitError, match="credentials are not pipeline parameters"):
        refuse_secrets({"aws_secret_access_key": "x"})
    with pytest.raises(SubmitError, match="carries a password"):
        refuse_secrets({"optuna_storage": "postgresql://optuna:hunter2@db:5432/optuna"})
    with pytest.raises(SubmitError, match="carries a password"):  # inside the JSON overrides too
        refuse_secrets({"params_overrides": json.dumps({"register": {"uri": "https://u:p@mlflow.example.org"}})})
    refuse_secrets(
        {"optuna_storage": "postgresql://optuna@db:5432/optuna", "mlflow_tracking_uri": "http://mlflow:5000"}
    )


def test_read_parameters_of_a_compiled_package(tmp_path):
    types, required = read_parameters(write_package(tmp_path / "tiny.yaml"))
    assert types == TYPES
    assert required == set()
    (tmp_path / "other.yaml").write_text("just: text\n")
    with pytest.raises(SubmitError, match="not a compiled pipeline"):
        read_parameters(tmp_path / "other.yaml")


def test_missing_package_is_a_one_line_error(tmp_path, capsys):
    status = main(["--host", "http://127.0.0.1:9", "--package", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "absent.yaml not found" in err


def test_malformed_param_is_a_one_line_error(tmp_path, capsys):
    package = write_package(tmp_path / "tiny.yaml")
    status = main(["--host", "http://127.0.0.1:9", "--package", str(package), "--param", "n_trials=many"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "n_trials" in err


def test_unreachable_host_fails_fast_with_one_line(tmp_path):
    """Port 9 (discard) on loopback refuses the connection. kfp.Client alone would retry its health
    check 5 times 5 s apart without a timeout; submit probes once, bounded by --timeout, first."""
    package = write_package(tmp_path / "tiny.yaml")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.submit", "--host", "http://127.0.0.1:9", "--package", str(package)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("submit: error: cannot reach the KFP API at http://127.0.0.1:9")


class FakeKfp(BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 REST API for kfp.Client to create an experiment and a run."""

    requests: list[tuple[str, str, dict, dict]] = []

    def _reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        return body

    def do_GET(self):  # noqa: N802
        self._record()
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"total_size": 0})
        else:
            self._reply({"message": "not found"}, 404)

    def do_POST(self):  # noqa: N802
        body = self._record()
        if self.path == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/runs":
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "experiment_id": "exp-1"})
        else:
            self._reply({"message": "not found"}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_kfp():
    FakeKfp.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", FakeKfp.requests
    finally:
        server.shutdown()
        server.server_close()


def test_submission_creates_the_experiment_and_a_typed_run(tmp_path, fake_kfp, capsys, monkeypatch):
    host, requests = fake_kfp
    package = write_package(tmp_path / "tiny.yaml")
    monkeypatch.setenv("KFP_TOKEN", "token-from-env")
    status = main(
        [
            "--host",
            host,
            "--package",
            str(package),
            "--run-name",
            "nightly",
            "--param",
            "n_trials=4",
            "--param",
            'params_overrides={"train": {"seed": 3}}',
            "--param",
            'architectures=["vdsr", "asym_vdsr"]',
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "run id: run-42" in out and f"run URL: {host}/#/runs/details/run-42" in out
    probe = requests[0]  # submit's own bounded health probe, then kfp.Client's calls
    assert probe[:2] == ("GET", "/apis/v2beta1/healthz") and probe[2]["authorization"] == "Bearer token-from-env"
    posts = {path: (headers, body) for method, path, headers, body in requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"][1]["display_name"] == "asymsr"
    headers, run = posts["/apis/v2beta1/runs"]
    assert headers.get("authorization") == "Bearer token-from-env"
    assert run["display_name"] == "nightly" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {
        "n_trials": 4,
        "params_overrides": '{"train": {"seed": 3}}',
        "architectures": ["vdsr", "asym_vdsr"],
    }
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "submit-test"
