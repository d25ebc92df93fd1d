"""Settings of ``asymsr bench``: one model, :class:`BenchConfig`, and the parsers of its lists.

The CLI builds ``asymsr bench``'s flags from this model at start-up (each field's description is
its flag's help text), so this module imports no torch: sizes, thread counts and memory formats
are checked here as text, and a bad value fails when the config is built, before any model is
made. Devices need torch to check (is CUDA there?); :func:`asymsr.bench.runner.parse_devices`
does that when the benchmark starts.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMAT_NAMES = ("nchw", "channels_last")  # memory formats by name; asymsr.bench.timing maps them to torch's
MIN_REPEATS = 3  # fewer rounds give no quartiles worth the name


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Output sizes as (height, width) in pixels from text like ``"256,512,1280x720"``.

    ``N`` means N x N; ``WxH`` is width by height (``1280x720`` is 720 rows of 1280 pixels).

    Raises:
        ValueError: an entry is not a positive integer or ``WxH`` pair; the message names it.
    """
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        pieces = part.lower().split("x")
        try:
            numbers = [int(piece) for piece in pieces]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2) or min(numbers) < 1:
            raise ValueError(f"bad size {part!r} in --sizes {text!r}: expected N or WxH with positive integers")
        width, height = (numbers[0], numbers[0]) if len(numbers) == 1 else numbers
        sizes.append((height, width))
    if not sizes:
        raise ValueError(f"--sizes {text!r} names no size")
    return sizes


def parse_threads(text: str) -> list[int]:
    """CPU thread counts from text like ``"1,all"``; ``all`` is ``os.cpu_count()``. Duplicates dropped.

    Raises:
        ValueError: an entry is neither a positive integer nor ``all``; the message names it.
    """
    threads: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() == "all":
            count = os.cpu_count() or 1
        else:
            try:
                count = int(part)
            except ValueError:
                count = 0
            if count < 1:
                raise ValueError(
                    f"bad thread count {part!r} in --threads {text!r}: expected a positive integer or 'all'"
                )
        if count not in threads:
            threads.append(count)
    if not threads:
        raise ValueError(f"--threads {text!r} names no thread count")
    return threads


def parse_formats(text: str) -> list[str]:
    """Memory formats from text like ``"nchw,channels_last"``, in order, duplicates dropped.

    Raises:
        ValueError: an entry is not one of :data:`FORMAT_NAMES`; the message names it.
    """
    formats = [p.strip() for p in text.split(",") if p.strip()]
    for name in formats:
        if name not in FORMAT_NAMES:
            raise ValueError(
                f"bad memory format {name!r} in --formats {text!r}: expected one of {', '.join(FORMAT_NAMES)}"
            )
    if not formats:
        raise ValueError(f"--formats {text!r} names no memory format")
    return list(dict.fromkeys(formats))


class BenchConfig(BaseModel):
    """What ``asymsr bench`` times, and how; closed and immutable.

    The list fields stay the text the user wrote (so the flag and the field are one); the
    validators parse them once to fail early, and :attr:`size_list`, :attr:`thread_list` and
    :attr:`format_list` give the parsed values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sizes: str = Field("256,512", description="comma-separated output sizes: N (NxN) or WxH, e.g. 256,1280x720")
    threads: str = Field("1,all", description="comma-separated CPU thread counts; 'all' = logical CPUs")
    device: str = Field("cpu", description="comma-separated devices: cpu, cuda, cuda:N (CUDA adds fp16, bf16 autocast)")
    formats: str = Field("nchw,channels_last", description="memory formats")
    warmup: int = Field(2, ge=0, description="untimed passes per variant and setting")
    repeats: int = Field(10, ge=MIN_REPEATS, description="timed interleaved rounds, >= 3; README numbers use >= 10")
    peak_gflops: float | None = Field(
        None,
        gt=0,
        description="the machine's peak FP32 GFLOP/s, if known (default: measured on the CPU by an FMA probe)",
    )
    measure_peak: bool = Field(True, description="measure the CPU's peak FLOP/s with the FMA probe")
    row_kernel: bool = Field(True, description="also time the native row-kernel variants on the CPU")
    training: bool = Field(False, description="also measure training throughput in patches/s")
    train_batch: int = Field(16, ge=1, description="41x41 patches per training step")
    train_steps: int = Field(3, ge=1, description="timed training steps per architecture")
    seed: int = Field(0, description="seed of the random weights and inputs")

    @field_validator("sizes")
    @classmethod
    def _check_sizes(cls, text: str) -> str:
        parse_sizes(text)
        return text

    @field_validator("threads")
    @classmethod
    def _check_threads(cls, text: str) -> str:
        parse_threads(text)
        return text

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, text: str) -> str:
        parse_formats(text)
        return text

    @property
    def size_list(self) -> list[tuple[int, int]]:
        """Output sizes as (height, width) in pixels, in the order given."""
        return parse_sizes(self.sizes)

    @property
    def thread_list(self) -> list[int]:
        """CPU thread counts, ``all`` resolved to the logical CPUs, duplicates dropped."""
        return parse_threads(self.threads)

    @property
    def format_list(self) -> list[str]:
        """Memory format names from :data:`FORMAT_NAMES`, in the order given, duplicates dropped."""
        return parse_formats(self.formats)
