"""``asymsr start-run``: the MLflow parent run of an orchestrated pipeline (Kubeflow's first step).

Under DVC, ``register`` creates the parent run itself at the end; an orchestrator whose steps
log live (tuning trials, training curves) needs it first, and passes the context file on. The
architectures' child runs are created here as well, before any step fans out.
"""

from __future__ import annotations

from pathlib import Path

from asymsr.stages._base import StageArgs, StageResult, arg, params_arg, parse_pairs

NAME = "start-run"
HELP = "Create the MLflow parent run of a pipeline execution; writes its context (tracking URI, run id) as JSON."


class Args(StageArgs):
    run_name: str = arg("pipeline", "name of the parent run")
    out: Path = arg(..., "context JSON for the later steps (tracking URI and parent run id)")
    tracking_uri: str | None = arg(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    tag: list[str] = arg([], "extra tag KEY=VALUE (repeatable)", repeat=True, metavar="KEY=VALUE")
    params: Path = params_arg(required=True)


class Result(StageResult):
    parent_run_id: str
    experiment: str
    out: Path

    def describe(self) -> str:
        return f"parent run {self.parent_run_id} in experiment {self.experiment!r}; context written to {self.out}"


def run(args: Args) -> Result:
    from asymsr.mlops import tracking
    from asymsr.schema.params import load_params

    params = load_params(args.params)
    client = tracking.connect(args.tracking_uri)
    tags = {"profile": params.profile, **parse_pairs(args.tag, "--tag")}
    parent = tracking.start_parent_run(client, params.registry.experiment, args.run_name, tags)
    # The architectures' runs too, now: later steps fan out (tune workers start together) and
    # then only look them up, instead of racing to create them.
    for arch in dict.fromkeys([params.registry.reference, params.registry.candidate, *params.train.arch]):
        tracking.child_run(client, parent, arch)
    tracking.write_run_context(args.out, parent, args.tracking_uri)
    return Result(parent_run_id=parent, experiment=params.registry.experiment, out=args.out)
