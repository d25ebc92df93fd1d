"""``asymsr bench``: structure and honesty of the benchmark record, on tiny sizes (fast)."""

import json
import os

import pytest
import torch
from PIL import Image

from asymsr import bench, native
from asymsr.cli import main

NATIVE = native.unavailable_reason() is None
ROW_CASES = 2 if NATIVE else 0  # vdsr and asym_vdsr on the row kernel, channels_last only

SIZES = [(16, 16), (20, 24)]  # (height, width): "16" and "24x20"


@pytest.fixture(scope="module")
def result():
    threads_before = torch.get_num_threads()
    record = bench.run_benchmark(
        sizes=SIZES, threads=[1], repeats=3, warmup=1, training=True, train_batch=2, train_steps=1, measure_peak=False
    )
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
    assert bench.parse_sizes("256, 512,1280x720") == [(256, 256), (512, 512), (720, 1280)]
    assert bench.parse_threads("1,all") == list(dict.fromkeys([1, os.cpu_count()]))
    assert bench.parse_formats("channels_last") == ["channels_last"]


@pytest.mark.parametrize(
    ("call", "value"),
    [
        (lambda: bench.parse_sizes("16,12y4"), "12y4"),
        (lambda: bench.parse_sizes("0"), "'0'"),
        (lambda: bench.parse_threads("1,many"), "many"),
        (lambda: bench.parse_threads("-2"), "-2"),
        (lambda: bench.parse_formats("nhwc"), "nhwc"),
        (lambda: bench.run_benchmark(sizes=[(8, 8)], repeats=2), "2"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(call, value):
    with pytest.raises(ValueError, match=value):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="cuda"):
        bench.parse_devices("cpu,cuda")


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
        assert case["gflops"] == pytest.approx(
            2 * case["macs_per_pixel"] * case["height"] * case["width"] / case["median_ms"] / 1e6
        )
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
    source = open(bench.__file__).read()
    assert "664" not in source and "443" not in source  # counted by a tool, not typed in


def test_ratios_and_derived_forms_match_their_sources(result):
    derived = 0
    for case in result["cases"]:
        if case["variant"] == "vdsr":
            assert case["ratio_to_vdsr"] == 1.0
        if case["variant"] in bench.SOURCES:
            assert case["max_abs_diff_to_source"] < 1e-4
            derived += 1
        else:
            assert case["max_abs_diff_to_source"] is None
    assert derived == len(SIZES) * (2 + ROW_CASES)
    for fmt in ("nchw", "channels_last"):
        same = [c for c in result["cases"] if c["size"] == "24x20" and c["memory_format"] == fmt]
        reference = next(c for c in same if c["variant"] == "vdsr")["median_ms"]
        for case in same:
            assert case["ratio_to_vdsr"] == pytest.approx(case["median_ms"] / reference)


def test_best_forms_pick_the_fastest_of_each_architecture(result):
    assert len(result["best"]) == len(SIZES)
    for row in result["best"]:
        same = [c for c in result["cases"] if c["size"] == row["size"]]
        asym = [c["median_ms"] for c in same if c["variant"].startswith("asym")]
        vdsr = [c["median_ms"] for c in same if not c["variant"].startswith("asym")]
        stock = [c["median_ms"] for c in same if c["variant"] == "vdsr"]
        assert (row["asym_ms"], row["vdsr_ms"], row["stock_vdsr_ms"]) == (min(asym), min(vdsr), min(stock))
        assert row["asym_over_vdsr"] == pytest.approx(min(asym) / min(vdsr))
        assert row["asym_over_stock_vdsr"] == pytest.approx(min(asym) / min(stock))


@pytest.mark.skipif(not NATIVE, reason=f"native kernels unavailable: {native.unavailable_reason()}")
def test_measured_peak_is_used_for_the_fraction():
    record = bench.run_benchmark(sizes=[(8, 8)], threads=[1], formats=["nchw"], repeats=3, warmup=0)
    peak = record["host"]["measured_peak_gflops"]["1"]
    assert peak > 1.0
    for case in record["cases"]:
        assert case["fraction_of_peak"] == pytest.approx(case["gflops"] / peak)
    assert "measured by the FMA probe" in bench.markdown_report(record)


def test_fused_equals_split_on_the_benchmark_input():
    models = bench.build_variants(seed=0)
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
    paths = bench.write_outputs(result, tmp_path / "out" / "bench")
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
    record = bench.run_benchmark(sizes=[(8, 8)], threads=[1], formats=["nchw"], repeats=3, warmup=0, peak_gflops=50.0)
    assert record["host"]["measured_peak_gflops"] is None  # a given peak is not measured again
    assert record["host"]["peak_gflops"] == 50.0
    for case in record["cases"]:
        assert case["fraction_of_peak"] == pytest.approx(case["gflops"] / 50.0)
    assert "of peak" in bench.markdown_report(record)


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
