"""Benchmarks: does Asym_VDSR's saving in multiply-adds show up in wall time?

* :mod:`asymsr.bench.runner`: :func:`~asymsr.bench.runner.run_benchmark`, every variant, size,
  thread count, device and dtype of one :class:`asymsr.schema.bench.BenchConfig` -> the record;
* :mod:`asymsr.bench.timing`: interleaved forward-pass timings and training throughput;
* :mod:`asymsr.bench.host`: the machine a timing was taken on, and the CPU thread count;
* :mod:`asymsr.bench.output`: the record as JSON, Markdown and a latency chart (PNG);
* :mod:`asymsr.bench.cpu_peak`: the CPU's measured peak FP32 FLOP/s (an FMA probe);
* :mod:`asymsr.bench.gpu_check`: the Python half of ``benchmarks/gpu_check.sh``.

Nothing is imported here: each module pulls in torch, and the CLI imports them only when a
benchmark runs.
"""
