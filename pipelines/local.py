"""Run the Kubeflow pipeline on this machine with ``kfp.local``: every task in a container of the
component image (``--runner docker``, as a cluster runs it) or in this Python environment
(``--runner subprocess``).

    make image-offline IMAGE=asymsr:dev                       # or `make image` with a registry
    python -m pipelines.local --image asymsr:dev --pipeline-root /abs/kfp-outputs \\
        --param profile=quick --param mlflow_tracking_uri=http://127.0.0.1:5000 \\
        --env AWS_ACCESS_KEY_ID --env AWS_SECRET_ACCESS_KEY --env AWS_ENDPOINT_URL_S3

``--param KEY=VALUE`` is read as in ``pipelines.submit``: typed by the compiled
``pipelines/asym_vdsr.yaml``. ``--env NAME`` hands this environment's ``NAME`` to every container
(credentials stay out of the command line and out of the pipeline's parameters). Containers run
on the host's network, so services on 127.0.0.1 (an MLflow server, PostgreSQL, S3) are the
cluster's services in rehearsal; they see the host's files only under ``--pipeline-root``, which
``kfp.local`` mounts at the same path, so datasets come from URIs (``s3://``, pinned archives) or
from under that folder. The image must be in the engine already: nothing is pulled.

What differs from a cluster: no GPU, CPU or memory requests (``build_pipeline(cluster=False)``),
no Kubernetes secrets (``--env`` instead), tasks run one at a time, and outputs are files under
``--pipeline-root`` instead of the cluster's object store.

Exit status: 0 the pipeline ran, 1 a task failed, 2 a bad argument, no engine or no such image.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `pipelines` when run as a script

from pipelines.submit import DEFAULT_PACKAGE, SubmitError, build_arguments, read_parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def image_user(client: Any, image: str) -> str:
    """The image's USER, checked to be present in the engine (``kfp.local`` would try to pull it)."""
    import docker

    try:
        return client.images.get(image).attrs["Config"].get("User") or "0"
    except docker.errors.ImageNotFound:
        host = os.environ.get("DOCKER_HOST", "the default socket")
        raise SubmitError(
            f"--image {image}: not in the Docker engine at {host}; build it first (make image-offline IMAGE={image})"
        ) from None
    except docker.errors.APIError as error:  # e.g. a malformed reference
        raise SubmitError(f"--image {image}: {error.explanation or error}") from None


def docker_client() -> Any:
    try:
        import docker
    except ImportError:
        raise SubmitError("--runner docker needs the `docker` package (pip install docker)") from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        host = os.environ.get("DOCKER_HOST", "the default socket")
        raise SubmitError(f"no Docker engine answers at {host}: {str(error).splitlines()[0][:200]}") from None
    return client


def _is_us(uid: str, owner: int) -> bool:
    return uid in ("0", "root", str(owner))


def pipeline_root(path: Path, user: str) -> str:
    """The absolute pipeline root, checked to be reachable and writable by the containers' ``user``
    (made so when this run creates it: the image's own user writes the outputs, as on a cluster)."""
    try:
        return _pipeline_root(path.expanduser().resolve(), user)
    except OSError as error:  # e.g. a folder above it that this user may not read
        raise SubmitError(f"--pipeline-root {path}: {error.strerror or error}") from None


def _pipeline_root(root: Path, user: str) -> str:
    uid = user.split(":")[0]
    for folder in [parent for parent in reversed(root.parents) if parent.exists()]:  # each must let that user pass
        mode = folder.stat()
        if not _is_us(uid, mode.st_uid) and not mode.st_mode & 0o001:
            raise SubmitError(
                f"--pipeline-root {root}: the image's user {user} cannot enter {folder} "
                "(choose a folder that others may enter, e.g. under /tmp)"
            )
    if not root.exists():
        missing = [root, *(parent for parent in root.parents if not parent.exists())]
        root.mkdir(parents=True)
        if not _is_us(uid, os.getuid()):
            for folder in missing[1:]:  # made here: let that user through, whatever the umask
                folder.chmod(folder.stat().st_mode | 0o755)
            root.chmod(0o777)
        return str(root)
    if not root.is_dir():
        raise SubmitError(f"--pipeline-root {root}: exists and is not a folder")
    if not _is_us(uid, root.stat().st_uid) and not root.stat().st_mode & 0o002:
        raise SubmitError(
            f"--pipeline-root {root}: the image's user {user} cannot write there; "
            "give a new folder (this run creates it writable) or make it writable for that user"
        )
    return str(root)


def container_environment(names: list[str]) -> dict[str, str]:
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise SubmitError(f"--env {missing[0]}: not set in this environment")
    return {name: os.environ[name] for name in names}


def run(args: argparse.Namespace) -> None:
    types, _ = read_parameters(Path(args.package))
    arguments = build_arguments(args.param, types)
    if "mlflow_tracking_uri" not in arguments and os.environ.get("MLFLOW_TRACKING_URI"):
        arguments["mlflow_tracking_uri"] = os.environ["MLFLOW_TRACKING_URI"]
    from kfp import local

    if args.runner == "docker":
        if not args.image:
            raise SubmitError("--runner docker needs --image TAG (the component image, e.g. from make image-offline)")
        environment = container_environment(args.env)
        client = docker_client()
        user = image_user(client, args.image)
        client.close()
        os.environ["ASYMSR_IMAGE"] = args.image  # read when the components are defined, just below
        runner: Any = local.DockerRunner(network_mode="host", environment=environment)
        root = pipeline_root(Path(args.pipeline_root), user)
        print(f"pipelines.local: image {args.image} (user {user}), pipeline root {root}", flush=True)
    else:
        if args.image or args.env:
            raise SubmitError("--image and --env are for --runner docker; --runner subprocess uses this environment")
        os.environ.setdefault("ASYMSR_PROFILES", str(REPO / "profiles"))
        runner = local.SubprocessRunner(use_venv=False)
        root = pipeline_root(Path(args.pipeline_root), str(os.getuid()))
    from pipelines.asym_vdsr import build_pipeline

    local.init(runner=runner, pipeline_root=root, raise_on_error=True)
    build_pipeline(cluster=False)(**arguments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=("docker", "subprocess"), default="docker")
    parser.add_argument("--image", help="the component image's tag in the local engine (--runner docker)")
    parser.add_argument("--pipeline-root", required=True, help="folder for every task's outputs (created if new)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a pipeline parameter")
    parser.add_argument("--env", action="append", default=[], metavar="NAME", help="pass NAME to every container")
    parser.add_argument("--package", default=str(REPO / DEFAULT_PACKAGE), help="compiled spec that types --param")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except SubmitError as error:
        print(f"pipelines.local: {error}", file=sys.stderr)
        return error.status
    except RuntimeError as error:  # kfp.local: a task failed (its log is above)
        print(f"pipelines.local: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
