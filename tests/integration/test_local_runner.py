"""`python -m pipelines.local`: every bad argument stops with one line and exit status 2 before a
task runs (the whole pipeline in containers is in test_kubeflow.py), and the pipeline root is
checked for the containers' user."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("kfp")

from pipelines.local import pipeline_root  # noqa: E402
from pipelines.submit import SubmitError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def local_runner(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    command = [sys.executable, "-m", "pipelines.local", *args]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--image", "x:1", "--param", "no_such=1"], {}, "--param no_such: the pipeline has no such parameter"),
        (["--param", "n_trials=two"], {}, "--param n_trials: 'two' is not valid JSON"),
        ([], {}, "--runner docker needs --image TAG"),
        (["--image", "x:1", "--env", "ASYMSR_SURELY_UNSET"], {}, "--env ASYMSR_SURELY_UNSET: not set"),
        (["--image", "x:1"], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "no Docker engine answers at unix:///nonexistent"),
        (["--runner", "subprocess", "--image", "x:1"], {}, "--image and --env are for --runner docker"),
    ],
)  # fmt: skip
def test_bad_arguments_stop_with_one_line_and_status_2(tmp_path, args, env, message):
    env.setdefault("DOCKER_HOST", os.environ.get("DOCKER_HOST", "unix:///nonexistent/docker.sock"))
    done = local_runner("--pipeline-root", str(tmp_path / "root"), *args, **env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipelines.local: ") and message in lines[0], done.stderr
    assert not (tmp_path / "root").exists()  # nothing made before the arguments were good


def test_pipeline_root_is_made_for_the_image_user_and_refused_where_it_cannot_enter(tmp_path):
    # pytest's tmp_path is private to its owner (0700): another uid cannot get into it
    if os.geteuid() == 1000:
        pytest.skip("this check needs a test user other than the image's uid 1000")
    with pytest.raises(SubmitError, match="the image's user 1000:1000 cannot enter"):
        pipeline_root(tmp_path / "root", "1000:1000")
    assert not (tmp_path / "root").exists()

    open_folder = Path(tempfile.mkdtemp(prefix="asymsr-root-"))
    try:
        open_folder.chmod(0o755)
        made = Path(pipeline_root(open_folder / "new", "1000:1000"))
        assert made.is_dir() and made.stat().st_mode & 0o777 == 0o777  # its outputs are written by uid 1000
        (open_folder / "theirs").mkdir()
        (open_folder / "theirs").chmod(0o755)  # whatever the umask
        with pytest.raises(SubmitError, match="cannot write there"):
            pipeline_root(open_folder / "theirs", "1000:1000")
        assert (open_folder / "theirs").stat().st_mode & 0o777 == 0o755  # a folder it did not make is left alone
        assert pipeline_root(open_folder / "theirs", f"{os.getuid()}") == str(open_folder / "theirs")
    finally:
        for child in sorted(open_folder.iterdir()):
            child.rmdir()
        open_folder.rmdir()
