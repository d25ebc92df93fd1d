"""The ``asymsr`` command line: one sub-command per pipeline stage.

Each sub-command parses its arguments and calls one library function; no logic lives here.
Errors that a user can fix (bad paths, corrupt files, wrong values) are printed as one
``asymsr: error: ...`` line with exit status 2; set ``ASYMSR_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from asymsr.checkpoint import CheckpointError
from asymsr.images import ImageReadError
from asymsr.params import Params, PrepareParams, ValidateParams, activate_profile, load_params
from asymsr.patches import PatchSetError
from asymsr.tracking import TrackingUnavailable
from asymsr.training import TrainConfig, TrainingDiverged

USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    ImageReadError,
    CheckpointError,
    PatchSetError,
    TrainingDiverged,
    TrackingUnavailable,
)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "") else int(text)


# ---------------------------------------------------------------- commands


def _params(args: argparse.Namespace) -> Params | None:
    """The validated ``--params`` file, or None when the command was not given one."""
    return load_params(args.params) if args.params else None


def cmd_fetch(args: argparse.Namespace) -> None:
    from asymsr.sources import fetch

    params = _params(args)
    if (args.source is None) == (args.dataset is None):
        raise ValueError("give either a SOURCE or --dataset NAME (with --params)")
    if args.dataset is not None:
        if params is None:
            raise ValueError("--dataset needs --params to look the source up")
        if args.dataset not in params.datasets:
            raise KeyError(
                f"{args.params}: datasets.{args.dataset} is not declared; declared: {sorted(params.datasets)}"
            )
        source = params.datasets[args.dataset]
    else:
        source = args.source
    files = fetch(source, args.out)
    print(f"fetched {len(files)} files from {source} into {args.out}")


def cmd_profile(args: argparse.Namespace) -> None:
    target = activate_profile(args.name, profiles=args.profiles, target=args.target)
    print(f"{target} is now profile {args.name!r} (from {Path(args.profiles) / args.name}.yaml); run `dvc repro`")


def cmd_validate(args: argparse.Namespace) -> None:
    from asymsr.validation import raise_on_failure, validate_images, validate_patches

    params = _params(args)
    settings = params.validation if params else ValidateParams()
    folder = Path(args.folder)
    if args.kind == "images":
        expected = args.expected_count or settings.expected_counts.get(folder.name)
        report = validate_images(folder, expected_count=expected, min_size=args.min_size or settings.min_size)
    else:
        report = validate_patches(folder, sample=args.sample or settings.patch_sample)
    out = Path(args.out)
    report.write(out.with_name(out.name + ".json"), out.with_name(out.name + ".html"))
    print(report.summary())
    print(f"report: {out}.json, {out}.html")
    raise_on_failure(report)


def cmd_prepare(args: argparse.Namespace) -> None:
    from asymsr.prepare import prepare

    params = _params(args)
    settings = params.prepare.model_dump() if params else PrepareParams().model_dump()
    for key in ("patch_size", "stride", "scales", "downsize_factors"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["skip_corrupt"] = settings["skip_corrupt"] or args.skip_corrupt
    config = PrepareParams(**settings).config(workers=args.workers)
    manifest = prepare(args.images, args.out, config, progress=not args.quiet)
    print(
        f"wrote {manifest['count']} patches to {args.out} (per scale: {manifest['counts_per_scale']}; "
        f"skipped images: {len(manifest['skipped'])})"
    )


def _train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    params = _params(args)
    values: dict[str, Any] = {}
    if params is not None:
        if args.arch is None:
            raise ValueError("--params needs --arch to pick the architecture's training block")
        values.update(params.train.config(args.arch).to_dict())
    if args.config:
        config_path = Path(args.config)
        if not config_path.is_file():
            raise FileNotFoundError(f"training config file not found: {config_path}")
        values.update(json.loads(config_path.read_text()))
    for spec in fields(TrainConfig):
        given = getattr(args, spec.name, None)
        if given is not None:
            values[spec.name] = given
    if args.arch_overrides:
        values["arch_overrides"] = json.loads(args.arch_overrides)
    return TrainConfig.from_dict(values)


def cmd_train(args: argparse.Namespace) -> None:
    from contextlib import nullcontext

    from asymsr.distributed import is_main_process
    from asymsr.tracking import live_training_log, parent_run_id
    from asymsr.training import train

    config = _train_config_from_args(args)
    main_process = is_main_process()  # under torchrun, only rank 0 logs to MLflow and prints
    parent = parent_run_id(args.parent_run_id) if main_process else None
    logging = live_training_log(parent, config.arch, config.to_dict()) if parent else nullcontext(None)
    with logging as on_epoch_end:
        history = train(
            config,
            args.patches,
            args.out,
            val=args.val,
            resume=args.resume,
            progress=not args.quiet,
            on_epoch_end=on_epoch_end,
        )
    if not main_process:
        return
    last = history[-1]
    shown = f", validation PSNR {last.val_psnr:.3f} dB" if last.val_psnr is not None else ""
    print(
        f"trained {config.arch} for {last.epoch} epochs ({last.step} steps): final loss {last.loss:.6f}{shown}; "
        f"model written to {Path(args.out) / 'model.pt'}"
    )


def cmd_tune(args: argparse.Namespace) -> None:
    from asymsr.tracking import parent_run_id
    from asymsr.tuning import settings_from_params, tune

    if not args.params:
        raise ValueError("tune needs --params (the tune block and the architecture's training config)")
    params = load_params(args.params)
    block = params.tune.model_dump()
    for key in ("trials", "storage", "timeout_s"):
        if getattr(args, key) is not None:
            block[key] = getattr(args, key)
    settings = settings_from_params(block, args.arch)
    summary = tune(
        args.arch,
        params.train.config(args.arch),
        settings,
        args.patches,
        args.val,
        args.out,
        workers=args.workers or params.tune.workers,
        experiment=params.registry.experiment,
        parent_run_id=parent_run_id(args.parent_run_id),
    )
    states = ", ".join(f"{count} {state.lower()}" for state, count in summary["states"].items())
    print(
        f"study {summary['study']}: {summary['counted']} of {summary['trials']} trials ({states}); "
        f"best trial {summary['best_trial']}: validation PSNR {summary['best_value_db']:.3f} dB with "
        f"{summary['best_params']}; written to {Path(args.out) / 'best_params.json'}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from asymsr.evaluation import evaluate, markdown_table
    from asymsr.inference import load_predictor

    params = _params(args)
    folders = args.data
    if folders is None:
        if params is None or args.data_root is None:
            raise ValueError("give --data DIR, or --params with --data-root to evaluate on the data.test datasets")
        folders = [str(Path(args.data_root) / name) for name in params.data.test]
    scales = args.scales or (params.evaluate.scales if params else [2, 3, 4])
    latency_size = args.latency_size or (params.evaluate.latency_size if params else 256)
    predictor = load_predictor(args.model, device=args.device, tile=args.tile, deploy=args.deploy)
    summary = evaluate(
        predictor,
        folders,
        scales,
        args.out,
        per_image_out=args.per_image_out,
        table_out=args.table_out,
        latency=not args.no_latency,
        latency_size=latency_size,
        progress=not args.quiet,
    )
    print(markdown_table(summary, predictor.name))


def cmd_import_weights(args: argparse.Namespace) -> None:
    from asymsr.checkpoint import model_payload, save_checkpoint
    from asymsr.reference_weights import load_npz_weights

    model = load_npz_weights(args.weights, arch=args.arch)
    save_checkpoint(args.out, model_payload(args.arch, model))
    print(f"imported {args.weights} as {args.arch} into {args.out}")


def cmd_upscale(args: argparse.Namespace) -> None:
    from asymsr.inference import load_predictor
    from asymsr.upscale import upscale_file

    predictor = load_predictor(args.model, device=args.device, tile=args.tile, deploy=args.deploy)
    if predictor.deploy is not None:
        print(f"deploy form: {predictor.deploy.describe()}")
    written = upscale_file(args.input, args.output, args.scale, predictor)
    print(f"wrote {written} (x{args.scale}, {predictor.name})")


def cmd_report(args: argparse.Namespace) -> None:
    from asymsr.fsutil import write_json, write_text
    from asymsr.report import comparison_report, comparison_table, gain_rows, load_summary

    labels = args.labels or [Path(path).stem for path in args.metrics]
    if len(labels) != len(args.metrics):
        raise ValueError(f"--labels has {len(labels)} names for {len(args.metrics)} metrics files")
    summaries = {label: load_summary(path) for label, path in zip(labels, args.metrics, strict=True)}
    visual = bool(args.visual_model or args.visual_images)
    if visual and not args.plots_dir:
        raise ValueError("--visual-model and --visual-images need --plots-dir")
    if visual and not (args.visual_model and args.visual_images):
        raise ValueError("--visual-model and --visual-images must be given together")
    if args.plots_dir:
        base = Path(args.out).parent if args.out else Path.cwd()
        pngs = _report_plots(args, summaries)
        table = comparison_report(summaries, {caption: os.path.relpath(png, base) for caption, png in pngs.items()})
    else:
        table = comparison_table(summaries)
    if args.out:
        write_text(args.out, table)
    if args.plot_out:
        write_json(args.plot_out, gain_rows(summaries))
    print(table)


def _report_plots(args: argparse.Namespace, summaries: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Write the report's PNGs into ``--plots-dir``; returns caption -> file."""
    from asymsr.images import list_images
    from asymsr.inference import load_predictor
    from asymsr.plots import COST_PLOTS, report_plots, summaries_with_cost

    for cost, (name, _) in COST_PLOTS.items():
        if not summaries_with_cost(summaries, cost):
            print(f"asymsr report: no summary has {cost!r}; {name} not written", file=sys.stderr)
    predictors = {}
    for label, spec in args.visual_model or []:
        if label in predictors:
            raise ValueError(f"--visual-model label {label!r} given twice")
        predictors[label] = load_predictor(spec, device=args.device)
    if args.visual_count < 1:
        raise ValueError(f"--visual-count must be >= 1, got {args.visual_count}")
    images = list_images(args.visual_images)[: args.visual_count] if args.visual_images else []
    return report_plots(summaries, args.plots_dir, predictors, images, args.visual_scale, args.visual_crop)


def _label_spec(text: str) -> tuple[str, str]:
    label, separator, spec = text.partition("=")
    if not separator or not label or not spec:
        raise argparse.ArgumentTypeError(f"expected LABEL=CHECKPOINT (or LABEL=bicubic), got {text!r}")
    return label, spec


def cmd_bench(args: argparse.Namespace) -> None:
    from asymsr.bench import (
        markdown_report,
        parse_devices,
        parse_formats,
        parse_sizes,
        parse_threads,
        run_benchmark,
        stderr_log,
        write_outputs,
    )

    result = run_benchmark(
        sizes=parse_sizes(args.sizes),
        threads=parse_threads(args.threads),
        devices=parse_devices(args.device),
        formats=parse_formats(args.formats),
        warmup=args.warmup,
        repeats=args.repeats,
        peak_gflops=args.peak_gflops,
        measure_peak=not args.no_measure_peak,
        row_kernel=not args.no_row_kernel,
        training=args.training,
        train_batch=args.train_batch,
        train_steps=args.train_steps,
        seed=args.seed,
        log=None if args.quiet else stderr_log,
    )
    paths = write_outputs(result, args.out)
    print(markdown_report(result))
    print("wrote " + ", ".join(str(path) for path in paths.values()))


def cmd_register(args: argparse.Namespace) -> None:
    from asymsr.registry import ArchOutputs, RegisterSettings, register_pipeline
    from asymsr.tracking import dvc_data_hash, git_commit, parent_run_id

    if not args.params:
        raise ValueError("register needs --params (the data.test datasets, evaluate scales and register block)")
    params = load_params(args.params)
    settings = RegisterSettings(**params.registry.model_dump())
    outputs = []
    for arch in dict.fromkeys([settings.reference, settings.candidate]):
        study = Path(args.tune_root) / arch / "study.json"
        tuning = study if study.is_file() else None
        metrics = Path(args.metrics_root) / f"{arch}.json"
        outputs.append(ArchOutputs(arch, Path(args.models_root) / arch, metrics, tuning))
    tags = {
        "git_commit": git_commit(),
        "dvc_data_hash": dvc_data_hash(args.data_hash_of),
        "profile": params.profile,
    }
    record = register_pipeline(
        outputs,
        settings,
        [Path(args.data_root) / name for name in params.data.test],
        params.evaluate.scales,
        args.out,
        params=params.model_dump(by_alias=True),
        reports=args.report or [],
        parent_run_id=parent_run_id(args.parent_run_id),
        tags=tags,
    )
    versions = ", ".join(f"{arch} v{version}" for arch, version in record["versions"].items())
    if record["unchanged"]:
        print(f"already registered with these inputs ({versions}); nothing changed")
    print(f"{settings.candidate}: {record['decision']['label']}: {record['decision']['reason']}")
    print(f"registered {versions}; parent run {record['parent_run_id']}; record written to {args.out}")


# ---------------------------------------------------------------- parser


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field, so the CLI cannot drift from the config."""
    hints = typing.get_type_hints(TrainConfig)
    doc = TrainConfig.__doc__ or ""
    for spec in fields(TrainConfig):
        if spec.name == "arch_overrides":
            continue
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
        help_text = _field_help(doc, spec.name) + f" (default: {default})"
        hint = hints[spec.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), default=None, help=help_text)
        elif spec.name == "val_scales":
            parser.add_argument(flag, type=_int_list, default=None, help=help_text)
        elif hint in (int | None,):
            parser.add_argument(flag, type=_optional_int, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=hint, default=None, help=help_text)
    parser.add_argument(
        "--arch-overrides",
        default=None,
        metavar="JSON",
        help='keyword overrides for the architecture, e.g. \'{"init": "he_fan_out"}\'',
    )


def _field_help(doc: str, name: str) -> str:
    marker = f"        {name}: "
    if marker not in doc:
        return name
    text = doc.split(marker, 1)[1]
    lines = [text.split("\n", 1)[0]]
    for line in text.split("\n")[1:]:
        if not line.startswith("            "):
            break
        lines.append(line.strip())
    return " ".join(lines).replace("``", "").replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asymsr", description="Train, evaluate and ship VDSR / Asym_VDSR super-resolution models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, params=None)
        if name in ("fetch", "validate", "prepare", "tune", "train", "evaluate", "register"):
            sub.add_argument(
                "--params",
                default=None,
                metavar="YAML",
                help="pipeline parameters (params.yaml), validated before any work; flags override it",
            )
        return sub

    fetch = command(
        "fetch",
        cmd_fetch,
        "Materialise a dataset source (builtin:skimage/<split> or a folder) with a checksum manifest.",
    )
    fetch.add_argument(
        "source",
        nargs="?",
        default=None,
        help="builtin:skimage/train, builtin:skimage/val, builtin:skimage/test, or a folder of images",
    )
    fetch.add_argument("--dataset", default=None, help="instead of SOURCE: the dataset of this name in --params")
    fetch.add_argument("--out", required=True, help="target folder (replaced atomically)")

    profile = command("profile", cmd_profile, "Switch params.yaml to a profile from profiles/ (quick, paper).")
    profile.add_argument("name", help="profile name: a file profiles/NAME.yaml")
    profile.add_argument("--profiles", default="profiles", help="folder of profiles (default: profiles)")
    profile.add_argument("--target", default="params.yaml", help="parameters file to replace (default: params.yaml)")

    validate = command(
        "validate",
        cmd_validate,
        "Check an image folder or a patch set with Great Expectations; writes OUT.json and OUT.html, fails on error.",
    )
    validate.add_argument("kind", choices=("images", "patches"), help="what FOLDER holds")
    validate.add_argument("folder", help="image folder, or patch folder written by `asymsr prepare`")
    validate.add_argument("--out", required=True, help="report path without suffix (OUT.json and OUT.html)")
    validate.add_argument(
        "--expected-count",
        type=int,
        default=None,
        help="images: expected number of files (default: known counts of Set5, Set14, ...)",
    )
    validate.add_argument("--min-size", type=int, default=None, help="images: minimum height and width (default: 41)")
    validate.add_argument("--sample", type=int, default=None, help="patches: rows checked per patch (default: 20000)")

    prepare = command("prepare", cmd_prepare, "Cut HR image folders into a memory-mapped set of VDSR training patches.")
    prepare.add_argument("images", nargs="+", help="folders of HR images")
    prepare.add_argument("--out", required=True, help="output patch folder (replaced atomically)")
    prepare.add_argument("--patch-size", type=int, default=None, help="patch side in pixels (default: 41)")
    prepare.add_argument("--stride", type=int, default=None, help="step between patches in pixels (default: 41)")
    prepare.add_argument("--scales", type=_int_list, default=None, help="comma-separated scales (default: 2,3,4)")
    prepare.add_argument(
        "--downsize-factors",
        type=_float_list,
        default=None,
        help="extra down-sized copies of each image, factors in (0, 1] (default: 1.0,0.7,0.5)",
    )
    prepare.add_argument(
        "--skip-corrupt", action="store_true", help="skip unreadable images (listed in the manifest) instead of failing"
    )
    prepare.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: up to 2)"
    )
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")

    train = command(
        "train", cmd_train, "Train an architecture on a patch folder; writes checkpoint.pt, model.pt, history.json."
    )
    train.add_argument("--patches", required=True, help="patch folder written by `asymsr prepare`")
    train.add_argument("--out", required=True, help="run folder for checkpoints and history")
    train.add_argument("--val", default=None, help="folder of held-out HR images for per-epoch validation PSNR")
    train.add_argument("--config", default=None, help="JSON file of training settings; flags override it")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--parent-run-id",
        default=None,
        help="log each epoch live to MLflow, in this parent run's child for the architecture "
        "(default: $ASYMSR_PARENT_RUN_ID; none = no live logging)",
    )
    _add_train_options(train)

    tune_parser = command(
        "tune",
        cmd_tune,
        "Search an architecture's training hyper-parameters with Optuna (resumable; parallel workers share the study).",
    )
    tune_parser.add_argument("--arch", required=True, help="architecture whose study to run")
    tune_parser.add_argument("--patches", required=True, help="patch folder written by `asymsr prepare`")
    tune_parser.add_argument("--val", required=True, help="validation images: the objective (never a test set)")
    tune_parser.add_argument("--out", required=True, help="folder for best_params.json, study.json and the plots")
    tune_parser.add_argument("--workers", type=int, default=None, help="worker processes here (default: tune.workers)")
    tune_parser.add_argument(
        "--trials", type=int, default=None, help="counted trials in the study (default: tune.trials)"
    )
    tune_parser.add_argument(
        "--timeout-s", type=float, default=None, help="stop starting trials after this many seconds"
    )
    tune_parser.add_argument(
        "--storage",
        default=None,
        help="SQLAlchemy URL of the study storage, e.g. postgresql://... (default: local SQLite)",
    )
    tune_parser.add_argument(
        "--parent-run-id", default=None, help="nest the trials under this MLflow run's architecture run"
    )

    evaluate = command(
        "evaluate",
        cmd_evaluate,
        "Score a model (or bicubic) with PSNR/SSIM on dataset folders; adds efficiency figures.",
    )
    evaluate.add_argument(
        "--model",
        required=True,
        help="'bicubic', a checkpoint (.pt) from train or import-weights, or an MLflow URI (models:/vdsr/1)",
    )
    evaluate.add_argument(
        "--data", action="append", default=None, help="dataset folder; repeat for several (named by folder name)"
    )
    evaluate.add_argument(
        "--data-root", default=None, help="with --params and no --data: evaluate on DATA_ROOT/<name> for data.test"
    )
    evaluate.add_argument("--scales", type=_int_list, default=None, help="comma-separated scales (default: 2,3,4)")
    evaluate.add_argument("--out", required=True, help="summary JSON")
    evaluate.add_argument("--per-image-out", default=None, help="per-image JSON (default: <out stem>.per_image.json)")
    evaluate.add_argument("--table-out", default=None, help="Markdown table (default: <out stem>.md)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    evaluate.add_argument("--tile", type=int, default=512, help="tile side for large images, in pixels (default: 512)")
    evaluate.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    evaluate.add_argument(
        "--deploy",
        choices=("auto", "as_trained"),
        default="as_trained",
        help="as_trained (default): the network as stored; auto: the fastest equivalent form on this device",
    )
    evaluate.add_argument(
        "--latency-size", type=int, default=None, help="square input side for latency, in pixels (default: 256)"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")

    weights = command(
        "import-weights", cmd_import_weights, "Turn published VDSR weights (.npz of conv00..conv19) into a checkpoint."
    )
    weights.add_argument("weights", help=".npz file of plain arrays")
    weights.add_argument("--arch", default="vdsr", help="architecture the arrays belong to (default: vdsr)")
    weights.add_argument("--out", required=True, help="checkpoint to write")

    upscale = command(
        "upscale", cmd_upscale, "Super-resolve an image file (luminance by the model, chroma bicubic) to PNG."
    )
    upscale.add_argument("input", help="image file (PNG, JPEG, BMP, WebP, TIFF; gray or colour)")
    upscale.add_argument("output", help="PNG file to write")
    upscale.add_argument("--scale", type=int, required=True, help="2, 3 or 4")
    upscale.add_argument(
        "--model",
        required=True,
        help="'bicubic', a checkpoint (.pt), or an MLflow URI such as models:/asym_vdsr@champion",
    )
    upscale.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    upscale.add_argument("--tile", type=int, default=512, help="tile side for large images, in pixels (default: 512)")
    upscale.add_argument(
        "--deploy",
        choices=("auto", "as_trained"),
        default="auto",
        help="auto: run the fastest equivalent form on this device, as trained or fused, NCHW or channels_last, "
        "chosen by timing (default: auto)",
    )

    report = command("report", cmd_report, "Compare evaluation summaries side by side (the first is the reference).")
    report.add_argument("metrics", nargs="+", help="summary JSON files from `asymsr evaluate`")
    report.add_argument(
        "--labels", type=lambda text: text.split(","), default=None, help="comma-separated column names"
    )
    report.add_argument("--out", default=None, help="also write the Markdown table here")
    report.add_argument("--plot-out", default=None, help="also write the PSNR gains as JSON rows for `dvc plots`")
    report.add_argument(
        "--plots-dir",
        default=None,
        metavar="DIR",
        help="write psnr_vs_params.png and psnr_vs_latency.png here; --out then gets the full report with links",
    )
    report.add_argument(
        "--visual-model",
        type=_label_spec,
        action="append",
        default=None,
        metavar="LABEL=CHECKPOINT",
        help="a model for the visual comparison (repeatable, in column order; CHECKPOINT may be 'bicubic')",
    )
    report.add_argument(
        "--visual-images", default=None, metavar="DIR", help="images for the visual comparison (visual_x<scale>.png)"
    )
    report.add_argument("--visual-count", type=int, default=3, help="first N images of DIR by name (default: 3)")
    report.add_argument("--visual-scale", type=int, default=4, help="scale of the visual comparison (default: 4)")
    report.add_argument("--visual-crop", type=int, default=96, help="crop side in pixels (default: 96)")
    report.add_argument("--device", default="auto", help="device for the visual models (default: auto)")

    bench = command(
        "bench",
        cmd_bench,
        "Time VDSR, Asym_VDSR, fused Asym_VDSR and (on CPU) both on the native row kernel (random weights)"
        " per size, threads, device and memory format; writes OUT.json, OUT.md and OUT.png.",
    )
    bench.add_argument(
        "--out", required=True, metavar="PREFIX", help="output prefix: PREFIX.json, PREFIX.md, PREFIX.png"
    )
    bench.add_argument(
        "--sizes", default="256,512", help="comma-separated output sizes: N (NxN) or WxH, e.g. 256,1280x720"
    )
    bench.add_argument(
        "--threads", default="1,all", help="comma-separated CPU thread counts; 'all' = logical CPUs (default: 1,all)"
    )
    bench.add_argument(
        "--device", default="cpu", help="comma-separated devices: cpu, cuda, cuda:N (CUDA adds fp16, bf16 autocast)"
    )
    bench.add_argument("--formats", default="nchw,channels_last", help="memory formats (default: nchw,channels_last)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed passes per variant and setting (default: 2)")
    bench.add_argument(
        "--repeats", type=int, default=10, help="timed interleaved rounds, >= 3; README numbers use >= 10 (default: 10)"
    )
    bench.add_argument(
        "--peak-gflops",
        type=float,
        default=None,
        help="the machine's peak FP32 GFLOP/s, if known (default: measured on the CPU by an FMA probe)",
    )
    bench.add_argument("--no-measure-peak", action="store_true", help="do not measure the CPU's peak FLOP/s")
    bench.add_argument(
        "--no-row-kernel", action="store_true", help="leave out the native row-kernel variants on the CPU"
    )
    bench.add_argument("--training", action="store_true", help="also measure training throughput in patches/s")
    bench.add_argument("--train-batch", type=int, default=16, help="41x41 patches per training step (default: 16)")
    bench.add_argument("--train-steps", type=int, default=3, help="timed training steps per architecture (default: 3)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default: 0)")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on standard error")

    register = command(
        "register",
        cmd_register,
        "Log the pipeline run to MLflow, register both models and apply the promotion gate (needs --params).",
    )
    register.add_argument("--models-root", default="models", help="folder of <arch>/ run folders (default: models)")
    register.add_argument(
        "--metrics-root", default="metrics", help="folder of <arch>.json summaries (default: metrics)"
    )
    register.add_argument(
        "--tune-root", default="reports/tune", help="folder of <arch>/study.json from `asymsr tune`, if tuned"
    )
    register.add_argument(
        "--data-root", required=True, help="folder of the data.test datasets (to re-evaluate an older champion)"
    )
    register.add_argument(
        "--report", action="append", default=None, help="file to log on the parent run (repeatable): report, plots"
    )
    register.add_argument("--out", required=True, help="JSON record of the versions and the decision")
    register.add_argument(
        "--parent-run-id", default=None, help="attach to this MLflow run (default: $ASYMSR_PARENT_RUN_ID, else new)"
    )
    register.add_argument(
        "--data-hash-of",
        default="data/patches",
        help="dvc.lock output whose hash is tagged as the data version (default: data/patches)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asymsr`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except USER_ERRORS as error:
        if os.environ.get("ASYMSR_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"asymsr: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
