#!/usr/bin/env bash
# One prepared check for a CUDA machine: a few minutes, installs nothing, reads no network.
#   1. CUDA is usable (nvidia-smi, then torch), else exit 1 saying why;
#   2. `asymsr bench --device cuda` at 256, 512 and 1280x720 (10 repeats, fp32/fp16/bf16, NCHW and
#      channels_last) with training throughput (--training);
#   3. both architectures trained on CUDA with profiles/quick.yaml's schedule (8 x 20 steps of 16
#      patches) on the embedded photographs (builtin:skimage, no download), each run timed;
#      with PAPER=1 also with profiles/paper.yaml's schedule (10,000 steps of 64 patches each,
#      same photographs, not the paper's 291 images);
#   4. everything merged into OUT_DIR/gpu_check_<UTC time>.json (src/asymsr/gpu_check.py).
# Usage: benchmarks/gpu_check.sh [OUT_DIR]    OUT_DIR: default $OUT if set, else benchmarks/results/gpu
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3); it needs
# torch with CUDA and the project's dependencies already installed. Only the JSON is kept.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-${OUT:-$root/benchmarks/results/gpu}}"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's asymsr, installed or not
unset ASYMSR_PARENT_RUN_ID                                # the trainings log nothing to MLflow

log() { printf '[%s] gpu_check: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
fail() { log "$*"; exit 1; }
asymsr() { "$python" -m asymsr.cli "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

command -v nvidia-smi >/dev/null 2>&1 ||
  fail "no CUDA: nvidia-smi is not on PATH (this check needs an NVIDIA GPU and its driver)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 ||
  fail "no CUDA: nvidia-smi failed (is the NVIDIA driver loaded?)"
gpu="$("$python" -m asymsr.bench.gpu_check check)" || exit 1
log "CUDA device: $gpu; results go to $out_dir"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d "${TMPDIR:-/tmp}/asymsr-gpu-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# CPU threads only feed the GPU here, so one thread count is enough.
log "1/4 benchmark: asymsr bench --device cuda --sizes 256,512,1280x720 --repeats 10 --training"
asymsr bench --device cuda --threads 1 --sizes 256,512,1280x720 --repeats 10 --training --out "$work/bench" >&2

log "2/4 data: the embedded photographs (builtin:skimage/train and /val)"
asymsr fetch builtin:skimage/train --out "$work/data/train" >&2
asymsr fetch builtin:skimage/val --out "$work/data/val" >&2

train_args=()
train_profile() { # PROFILE: patches cut as profiles/PROFILE.yaml says, both architectures trained on CUDA
  local profile="$1" params="$root/profiles/$1.yaml" arch run start
  [[ -f "$params" ]] || fail "no profile $params"
  asymsr prepare --params "$params" "$work/data/train" --out "$work/patches/$profile" --quiet >&2
  for arch in vdsr asym_vdsr; do
    run="$work/runs/$profile/$arch"
    log "3/4 training $arch with the $profile profile's schedule on CUDA"
    start="$(now_ms)"
    asymsr train --params "$params" --arch "$arch" --device cuda --patches "$work/patches/$profile" \
      --val "$work/data/val" --out "$run" --quiet >&2
    train_args+=(--train "$profile" "$arch" "$run" "$(($(now_ms) - start))")
  done
}
train_profile quick
if [[ "${PAPER:-0}" == 1 ]]; then
  train_profile paper
fi

log "4/4 merging into $out_dir/gpu_check_$stamp.json"
"$python" -m asymsr.bench.gpu_check merge --bench "$work/bench.json" "${train_args[@]}" \
  --training-data "builtin:skimage/train (patches), builtin:skimage/val (validation PSNR)" \
  --out "$out_dir/gpu_check_$stamp.json" >&2
log "done: $out_dir/gpu_check_$stamp.json"
