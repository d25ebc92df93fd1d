"""Re-run the hand-made mutants of issue 17, and those mutmut cannot make, against the unit tests.

mutmut (``make mutate``) mutates function bodies only: it skips decorated functions
(:func:`asymsr.nn.models.fuse` under ``@torch.no_grad()``, :func:`asymsr.sr.resize.contributions`
under ``@lru_cache``) and module-level constants (the BT.601 matrix, the PSNR peak). This script
covers those with realistic bugs written by hand, next to the mutants of the issue's audit table.

Each mutant is one textual replacement in one source file, applied to a scratch copy of ``src``
and ``tests`` placed where no ``../shared`` exists, so the Set5/Set14 tests skip and every kill
comes from a test that does not need the datasets. Prints one line per mutant, KILLED (with the
tests that failed) or SURVIVED, and exits 1 if any survived.

Usage (from the repository root): ``python reports/mutation/hand_mutants.py [SCRATCH_DIR]``
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = "tests/unit"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # under src/asymsr
    old: str
    new: str
    tests: tuple[str, ...]


PROMOTION = "mlops/promotion.py"
PREPARE = "data/prepare.py"
PATCHES = "data/patches.py"
COLOR = "sr/color.py"
PROTOCOL = "sr/protocol.py"
RESIZE = "sr/resize.py"
MODELS = "nn/models.py"
Y_ROW = "[[65.481, 128.553, 24.966]"
GATE = "if drop > max_psnr_drop:"
PSNR_SCORE = 'scores = {"psnr": psnr(pair.hr_y, estimate, border=pair.scale)}'
SSIM_SCORE = 'scores["ssim"] = ssim(pair.hr_y, estimate, border=pair.scale)'
INPUT_TRANSFORM = "return dihedral(batch_in, transforms)[:, None]"
EINSUM = 'torch.einsum("omx,miy->oiyx"'

MUTANTS = [
    # the seven survivors of the audit
    Mutant("quality allows max_psnr_drop + 0.1", PROMOTION, GATE, "if drop > max_psnr_drop + 0.1:", (UNIT + "/mlops",)),
    Mutant("quality uses >= instead of >", PROMOTION, GATE, "if drop >= max_psnr_drop:", (UNIT + "/mlops",)),
    Mutant(
        "size ignores model_bytes",
        PROMOTION,
        "if candidate.params >= reference.params or candidate.model_bytes >= reference.model_bytes:",
        "if candidate.params >= reference.params:",
        (UNIT + "/mlops",),
    ),
    Mutant(
        "image_patches ignores the stride",
        PREPARE,
        "_grid(label.shape[0], size, stride), _grid(label.shape[1], size, stride)",
        "_grid(label.shape[0], size, size), _grid(label.shape[1], size, size)",
        (UNIT + "/data/test_prepare.py",),
    ),
    Mutant(
        "loader drops the restore step on inputs",
        PATCHES,
        "inputs[indices[order]].astype(np.float32)[restore]",
        "inputs[indices[order]].astype(np.float32)",
        (UNIT + "/data/test_patches.py",),
    ),
    Mutant(
        "input gets another item's transform",
        PATCHES,
        INPUT_TRANSFORM,
        "return dihedral(batch_in, transforms.flip(0))[:, None]",
        (UNIT + "/data/test_patches.py",),
    ),
    Mutant(
        "input is never flipped",
        PATCHES,
        INPUT_TRANSFORM,
        "return dihedral(batch_in, transforms % 4)[:, None]",
        (UNIT + "/data/test_patches.py",),
    ),
    Mutant(
        "resume skips the scheduler state",
        "training/loop.py",
        '    session.scheduler.load_state_dict(state["scheduler"])\n',
        "",
        (UNIT + "/training/test_training.py",),
    ),
    # caught before only by the Set5 tests (which need ../shared), or only by a crash
    Mutant("Y: R coefficient +0.001", COLOR, Y_ROW, "[[65.482, 128.553, 24.966]", (UNIT + "/sr",)),
    Mutant("Y: R coefficient -0.001", COLOR, Y_ROW, "[[65.480, 128.553, 24.966]", (UNIT + "/sr",)),
    Mutant("Y: G coefficient +0.001", COLOR, Y_ROW, "[[65.481, 128.554, 24.966]", (UNIT + "/sr",)),
    Mutant("Y: G coefficient -0.010", COLOR, Y_ROW, "[[65.481, 128.543, 24.966]", (UNIT + "/sr",)),
    Mutant("Y: B coefficient +0.001", COLOR, Y_ROW, "[[65.481, 128.553, 24.967]", (UNIT + "/sr",)),
    Mutant("Y: B coefficient -0.001", COLOR, Y_ROW, "[[65.481, 128.553, 24.965]", (UNIT + "/sr",)),
    Mutant(
        "score shaves scale - 1 pixels",
        PROTOCOL,
        PSNR_SCORE,
        PSNR_SCORE.replace("pair.scale", "pair.scale - 1")
        + "\n    pair = TestPair(pair.hr_y, pair.network_input, pair.scale - 1)",
        (UNIT + "/sr",),
    ),
    Mutant(
        "PSNR shaves one pixel more than SSIM",
        PROTOCOL,
        PSNR_SCORE,
        PSNR_SCORE.replace("pair.scale", "pair.scale + 1"),
        (UNIT + "/sr",),
    ),
    Mutant(
        "SSIM shaves one pixel less than PSNR",
        PROTOCOL,
        SSIM_SCORE,
        SSIM_SCORE.replace("pair.scale", "pair.scale - 1"),
        (UNIT + "/sr",),
    ),
    Mutant(
        "x3/x4 labels paired with x2 inputs",
        PREPARE,
        "network_input = degrade(label, scale)",
        "network_input = degrade(label, config.scales[0])",
        (UNIT + "/data/test_prepare.py",),
    ),
    # module-level constants, which mutmut does not mutate
    Mutant(
        "Y offset 16 -> 17",
        COLOR,
        "np.array([16.0, 128.0, 128.0])",
        "np.array([17.0, 128.0, 128.0])",
        (UNIT + "/sr",),
    ),
    Mutant("PSNR peak 255 -> 256", "sr/metrics.py", "PEAK = 255.0", "PEAK = 256.0", (UNIT + "/sr",)),
    # fuse (decorated with @torch.no_grad(), skipped by mutmut)
    Mutant("fuse: kernel transposed", MODELS, EINSUM, 'torch.einsum("omx,miy->oixy"', (UNIT + "/nn/test_models.py",)),
    Mutant(
        "fuse: channel roles of the 1x3 swapped",
        MODELS,
        EINSUM,
        'torch.einsum("mox,miy->oiyx"',
        (UNIT + "/nn/test_models.py",),
    ),
    Mutant(
        "fuse: pair factors swapped",
        MODELS,
        "pairs = zip(middle[0::2], middle[1::2], strict=True)",
        "pairs = zip(middle[1::2], middle[0::2], strict=True)",
        (UNIT + "/nn/test_models.py",),
    ),
    Mutant(
        "fuse: dtype not kept",
        MODELS,
        "fused.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)",
        "fused.to(device=next(model.parameters()).device)",
        (UNIT + "/nn/test_models.py",),
    ),
    Mutant(
        "fuse: device not kept",
        MODELS,
        "fused.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)",
        "fused.to(dtype=next(model.parameters()).dtype)",
        (UNIT + "/nn/test_models.py",),
    ),
    Mutant(
        "fuse: left in training mode", MODELS, "return fused.eval()", "return fused", (UNIT + "/nn/test_models.py",)
    ),
    # contributions (cached with @lru_cache, skipped by mutmut)
    Mutant(
        "imresize: no antialiasing when shrinking",
        RESIZE,
        "        kernel_width /= scale\n",
        "        pass\n",
        (UNIT + "/sr",),
    ),
    Mutant(
        "imresize: sample positions shifted",
        RESIZE,
        "u = x / scale + 0.5 * (1.0 - 1.0 / scale)",
        "u = x / scale - 0.5 * (1.0 - 1.0 / scale)",
        (UNIT + "/sr",),
    ),
    Mutant(
        "imresize: weights not normalised",
        RESIZE,
        "    weights /= weights.sum(axis=1, keepdims=True)\n",
        "",
        (UNIT + "/sr",),
    ),
    Mutant(
        "imresize: edge replicated instead of mirrored",
        RESIZE,
        "source = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]",
        "source = np.clip(indices.astype(np.int64) - 1, 0, in_length - 1)",
        (UNIT + "/sr",),
    ),
    Mutant(
        "imresize: taps cut to the kernel width (the last one lost)",
        RESIZE,
        "taps = int(math.ceil(kernel_width)) + 2",
        "taps = int(math.ceil(kernel_width))",
        (UNIT + "/sr",),
    ),
]


def run(mutant: Mutant, scratch: Path) -> tuple[bool, list[str], str]:
    """Apply ``mutant`` to a fresh copy of src/ under ``scratch`` and run its tests; (killed, failed tests, summary)."""
    src = scratch / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    target = src / "asymsr" / mutant.path
    text = target.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(
            f"{mutant.name}: expected the original text once in {mutant.path}, found {text.count(mutant.old)}"
        )
    target.write_text(text.replace(mutant.old, mutant.new))
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *mutant.tests]
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    failed = sorted(
        {line.split()[1].split("::")[-1].split("[")[0] for line in lines if line.startswith(("FAILED", "ERROR"))}
    )
    return result.returncode != 0, failed, lines[-1] if lines else result.stderr.strip()[-200:]


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="asymsr-hand-mutants-"))
    scratch = base / "no-shared-beside" / "repo"  # ../shared of this copy does not exist
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    shutil.copytree(ROOT / "tests", scratch / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    assert not (scratch.parent / "shared").exists()
    started, survived = time.perf_counter(), 0
    for mutant in MUTANTS:
        killed, failed, summary = run(mutant, scratch)
        survived += not killed
        verdict = f"KILLED by {', '.join(failed)}" if killed else "SURVIVED"
        print(f"{mutant.name}: {verdict} ({summary})", flush=True)
    print(
        f"{len(MUTANTS)} hand mutants, {len(MUTANTS) - survived} killed, {survived} survived, "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
