"""``asymsr bench``: structure and honesty of the benchmark record, on tiny sizes (fast)."""

import json
import os

import pytest
import torch
from PIL import Image

from asymsr.bench import host, output, runner, timing
from asymsr.cli import main
from asymsr.nn import native
from asymsr.nn.models import build, fuse
from asymsr.schema.bench import BenchConfig, parse_formats, parse_sizes, parse_threads
from tests.conftest import TINY

NATIVE = native.unavailable_reason() is None
ROW_CASES = 2 if NATIVE else 0  # vdsr and asym_vdsr on the row kernel, channels_last only

SIZES = [(16, 16), (20, 24)]  # (height, width): "16" and "24x20"
SIZES_TEXT = "16,24x20"


@pytest.fixture(scope="module")
def result():
    threads_before = torch.get_num_threads()
    config = BenchConfig(
        sizes=SIZES_TEXT,
        threads="1",
        repeats=3,
        warmup=1,
        training=True,
        train_batch=2,
        train_steps=1,
        measure_peak=False,
    )
    record = runner.run_benchmark(config)
    assert torch.get_num_threads() == threads_before  # restored
    return record


def table_rows(markdown: str) -> list[str]:
    """Rows of the first Markdown table (the latency table), without header and rule."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| size |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_parse_sizes_and_threads():
    assert parse_sizes("256, 512,1280x720") == [(256, 256), (512, 512), (720, 1280)]
    assert parse_threads("1,all") == list(dict.fromkeys([1, os.cpu_count()]))
    assert parse_formats("channels_last") == ["channels_last"]


def test_config_gives_the_parsed_lists():
    config = BenchConfig(sizes=SIZES_TEXT, threads="2,1,2", formats="channels_last,nchw")
    assert config.size_list == SIZES
    assert config.thread_list == [2, 1]
    assert config.format_list == ["channels_last", "nchw"]
    defaults = BenchConfig()
    assert defaults.size_list == [(256, 256), (512, 512)] and defaults.thread_list == parse_threads("1,all")
    assert (defaults.device, defaults.repeats, defaults.measure_peak, defaults.training) == ("cpu", 10, True, False)


@pytest.mark.parametrize(
    ("call", "value"),
    [
        (lambda: parse_sizes("16,12y4"), "12y4"),
        (lambda: parse_sizes("0"), "'0'"),
        (lambda: parse_threads("1,many"), "many"),
        (lambda: parse_threads("-2"), "-2"),
        (lambda: parse_formats("nhwc"), "nhwc"),
        (lambda: BenchConfig(sizes="8", repeats=2), "2"),
        (lambda: BenchConfig(sizes="16,12y4"), "12y4"),
        (lambda: BenchConfig(threads="1,many"), "many"),
        (lambda: BenchConfig(formats="nhwc"), "nhwc"),
        (lambda: BenchConfig(peak_gflops=-1.0), "-1.0"),
        (lambda: BenchConfig(repeat=10), "repeat"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(call, value):
    with pytest.raises(ValueError, match=value):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="cuda"):
        runner.parse_devices("cpu,cuda")


def test_record_structure_and_host(result):
    assert set(result) == {"host", "protocol", "models", "cases", "best", "training"}
    host = result["host"]
    for key in ("cpu_model", "logical_cpus", "threads", "gpu", "torch", "datetime_utc", "peak_gflops"):
        assert key in host
    assert host["cpu_model"] and host["logical_cpus"] == os.cpu_count() and host["threads"] == [1]
    assert host["torch"] == torch.__version__ and host["peak_gflops"] is None and host["measured_peak_gflops"] is None
    assert host["datetime_utc"].endswith("+00:00")
    # sizes x threads x (formats x variants + row kernels), fp32 on CPU
    assert len(result["cases"]) == len(SIZES) * 1 * (2 * 3 + ROW_CASES)
    for case in result["cases"]:
        assert case["repeats"] == 3 and case["device"] == "cpu" and case["dtype"] == "fp32"
        assert case["min_ms"] <= case["q1_ms"] <= case["median_ms"] <= case["q3_ms"]
        assert case["gflops"] > 0 and case["ratio_to_vdsr"] > 0
        assert case["peak_memory_bytes"] is None and case["fraction_of_peak"] is None
    assert {(c["height"], c["width"]) for c in result["cases"]} == set(SIZES)
    assert {c["size"] for c in result["cases"]} == {"16x16", "24x20"}


def test_costs_are_counted(result):
    models = result["models"]
    assert models["vdsr"]["macs_per_pixel"] == 664_704
    assert models["asym_vdsr"]["macs_per_pixel"] == 443_520
    assert models["asym_vdsr_fused"]["macs_per_pixel"] == 664_704
    assert models["asym_vdsr"]["params"] == 443_520 and models["vdsr"]["params"] == 664_704
    assert models["asym_vdsr"]["checkpoint_bytes"] < models["asym_vdsr_fused"]["checkpoint_bytes"]
    for module in (runner, timing, host, output):
        source = open(module.__file__).read()
        assert "664" not in source and "443" not in source  # counted by a tool, not typed in


def test_ratios_and_derived_forms_match_their_sources(result):
    derived = 0
    for case in result["cases"]:
        if case["variant"] == "vdsr":
            assert case["ratio_to_vdsr"] == 1.0
        if case["variant"] in runner.SOURCES:
            assert case["max_abs_diff_to_source"] < 1e-4
            derived += 1
        else:
            assert case["max_abs_diff_to_source"] is None
    assert derived == len(SIZES) * (2 + ROW_CASES)


def test_best_forms_cover_every_setting(result):
    """One best row per setting, naming cases of that setting; VDSR's best is at most its stock form."""
    assert [row["size"] for row in result["best"]] == ["16x16", "24x20"]
    for row in result["best"]:
        named = {
            f"{c['variant']}/{c['memory_format']}": c["median_ms"] for c in result["cases"] if c["size"] == row["size"]
        }
        assert (named[row["asym"]], named[row["vdsr"]]) == (row["asym_ms"], row["vdsr_ms"])
        assert row["vdsr_ms"] <= row["stock_vdsr_ms"]


# Known timings for time_device (the timer replaced): (height, width) = (10, 20), so 200 pixels.
FAKE_TIMINGS_MS = {
    "vdsr/nchw": [5.0, 4.0, 6.0],
    "asym_vdsr/nchw": [2.0, 3.0, 2.5],
    "asym_vdsr_fused/nchw": [2.0, 1.0, 3.0],
}
FAKE_COSTS = {
    "vdsr": {"arch": "vdsr", "params": 100, "checkpoint_bytes": 1_000, "macs_per_pixel": 1_000},
    "asym_vdsr": {"arch": "asym_vdsr", "params": 60, "checkpoint_bytes": 700, "macs_per_pixel": 500},
    "asym_vdsr_fused": {"arch": "vdsr", "params": 100, "checkpoint_bytes": 1_000, "macs_per_pixel": 1_000},
}


def test_cases_and_best_forms_from_known_timings(monkeypatch):
    """Summaries, GFLOP/s, ratios, source differences and best forms, worked out by hand from fixed timings.

    Medians (inclusive quartiles of 3 values: the middle one, q1/q3 halfway to the ends):
    vdsr 5 ms (q1 4.5, q3 5.5, min 4), asym 2.5 ms, fused 2 ms. GFLOP/s = 2 x MACs x 200 px / time:
    vdsr 2 x 1000 x 200 / 5 ms = 0.08, asym 2 x 500 x 200 / 2.5 ms = 0.08, fused 0.4 / 2 = 0.2.
    Ratios to VDSR: 1, 0.5, 0.4. The fused output differs from asym's by 0.25 in one pixel.
    """
    outputs = {key: torch.zeros(1, 1, 10, 20) for key in FAKE_TIMINGS_MS}
    outputs["asym_vdsr_fused/nchw"][0, 0, 3, 4] = -0.25

    def fake_time_setting(candidates, height, width, device, dtype, warmup, repeats, seed=0):
        assert sorted(candidates) == sorted(FAKE_TIMINGS_MS) and (height, width) == (10, 20)
        return {
            key: {"timings_ms": FAKE_TIMINGS_MS[key], "output": outputs[key], "peak_memory_bytes": None}
            for key in candidates
        }

    monkeypatch.setattr(runner, "time_setting", fake_time_setting)
    config = BenchConfig(sizes="20x10", threads="1", formats="nchw", row_kernel=False, repeats=3, warmup=0)
    torch.manual_seed(0)
    asym = build("asym_vdsr", **TINY)
    base = {"vdsr": build("vdsr", **TINY), "asym_vdsr": asym, "asym_vdsr_fused": fuse(asym)}
    lines = []
    cases = runner.time_device(config, torch.device("cpu"), base, FAKE_COSTS, lines.append)
    by_variant = {case["variant"]: case for case in cases}
    vdsr, split, fused = by_variant["vdsr"], by_variant["asym_vdsr"], by_variant["asym_vdsr_fused"]
    assert (vdsr["median_ms"], vdsr["q1_ms"], vdsr["q3_ms"], vdsr["min_ms"]) == (5.0, 4.5, 5.5, 4.0)
    assert (split["median_ms"], fused["median_ms"], fused["min_ms"]) == (2.5, 2.0, 1.0)
    assert [vdsr["gflops"], split["gflops"], fused["gflops"]] == pytest.approx([0.08, 0.08, 0.2], rel=1e-12)
    assert [vdsr["ratio_to_vdsr"], split["ratio_to_vdsr"], fused["ratio_to_vdsr"]] == [1.0, 0.5, 0.4]
    assert (vdsr["max_abs_diff_to_source"], split["max_abs_diff_to_source"]) == (None, None)
    assert fused["max_abs_diff_to_source"] == 0.25
    assert (split["params"], split["checkpoint_bytes"], split["macs_per_pixel"]) == (60, 700, 500)
    assert (vdsr["size"], vdsr["height"], vdsr["width"], vdsr["threads"]) == ("20x10", 10, 20, 1)
    assert len(lines) == 1 and "vdsr/nchw 5.0 ms" in lines[0]
    (best,) = runner.best_forms(cases)
    assert (best["asym"], best["asym_ms"], best["vdsr"], best["vdsr_ms"]) == (
        "asym_vdsr_fused/nchw",
        2.0,
        "vdsr/nchw",
        5.0,
    )
    assert (best["asym_over_vdsr"], best["asym_over_stock_vdsr"]) == (0.4, 0.4)


@pytest.mark.skipif(not NATIVE, reason=f"native kernels unavailable: {native.unavailable_reason()}")
def test_measured_peak_is_used_for_the_fraction():
    record = runner.run_benchmark(BenchConfig(sizes="8", threads="1", formats="nchw", repeats=3, warmup=0))
    peak = record["host"]["measured_peak_gflops"]["1"]
    assert peak > 1.0
    for case in record["cases"]:
        assert case["fraction_of_peak"] == pytest.approx(case["gflops"] / peak)
    assert "measured by the FMA probe" in output.markdown_report(record)


def test_fused_equals_split_on_the_benchmark_input():
    models = runner.build_variants(seed=0)
    sample = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (models["asym_vdsr"](sample) - models["asym_vdsr_fused"](sample)).abs().max().item()
    assert difference < 1e-4
    assert models["asym_vdsr_fused"].block == "full" and models["asym_vdsr"].block == "asymmetric"


def test_training_throughput(result):
    rows = result["training"]
    assert [row["arch"] for row in rows] == ["vdsr", "asym_vdsr"]
    assert all(row["patches_per_s"] > 0 and row["batch"] == 2 and row["patch"] == 41 for row in rows)
    assert rows[0]["ratio_to_vdsr"] == 1.0


def test_outputs(result, tmp_path):
    paths = output.write_outputs(result, tmp_path / "out" / "bench")
    assert sorted(path.name for path in paths.values()) == ["bench.json", "bench.md", "bench.png"]
    assert json.loads(paths["json"].read_text())["cases"] == json.loads(json.dumps(result["cases"]))
    markdown = paths["md"].read_text()
    assert len(table_rows(markdown)) == len(result["best"])
    assert markdown.split("All cases:")[1].count("| cpu/fp32 |") == len(result["cases"])
    assert "patches/s" in markdown
    with Image.open(paths["png"]) as image:
        image.load()
        assert image.format == "PNG" and image.width > 100
    assert not list((tmp_path / "out").glob(".*tmp"))  # nothing left over by the atomic writes


def test_peak_gives_fraction(tmp_path):
    config = BenchConfig(sizes="8", threads="1", formats="nchw", repeats=3, warmup=0, peak_gflops=50.0)
    record = runner.run_benchmark(config)
    assert record["host"]["measured_peak_gflops"] is None  # a given peak is not measured again
    assert record["host"]["peak_gflops"] == 50.0
    for case in record["cases"]:
        assert case["fraction_of_peak"] == pytest.approx(case["gflops"] / 50.0)
    assert "of peak" in output.markdown_report(record)


def test_cli_writes_three_files(tmp_path, capsys):
    prefix = tmp_path / "b"
    argv = ["bench", "--sizes", "16", "--threads", "1", "--formats", "nchw", "--repeats", "3", "--warmup", "1"]
    assert main([*argv, "--out", str(prefix), "--quiet", "--no-measure-peak"]) == 0
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"b.{suffix}").is_file()
    assert (tmp_path / "b.md").read_text().split("All cases:")[1].count("| cpu/fp32 |") == 3
    assert "| 16x16 | 1 | cpu/fp32 | nchw | vdsr |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value"), [("--sizes", "16,big"), ("--threads", "one"), ("--repeats", "2"), ("--formats", "nhwc")]
)
def test_cli_bad_value_exits_2_naming_it(tmp_path, capsys, flag, value):
    assert main(["bench", flag, value, "--out", str(tmp_path / "b"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("asymsr: error:") and value in error and error.count("\n") == 1
    assert not list(tmp_path.iterdir())
