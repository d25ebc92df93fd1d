#!/usr/bin/env bash
# Does a label term help the distillation? The transfer profile with compress.loss.label set to
# each of WEIGHTS (default 0 0.1 1; teacher weight 1), a shorter fine-tuning (STEPS, default
# 1,000), each model scored on Set5 and Set14 at x2/x3/x4; runs one after another (2 cores).
#   benchmarks/label_term.sh PATCHES RAW OUT
#     PATCHES: the transfer profile's patch folder (data/patches in docs/compression.md)
#     RAW:     the folder holding bsd_val10/, Set5/ and Set14/ (data/raw there)
#     OUT:     a new folder (runs/label_term, say: runs/ is not tracked)
# Writes OUT/label_<w>.yaml (the params), OUT/label_<w>/ (compress's folder), OUT/label_<w>.eval.*
# (evaluate's), OUT/label_<w>.time (the compress call's wall seconds), then OUT.md and OUT.json
# (benchmarks/label_term_table.py). TEACHER overrides the teacher (default: the profile's).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "label_term.sh: $*" >&2; exit 2; }
[[ $# -eq 3 ]] || fail "usage: label_term.sh PATCHES RAW OUT"
patches="$1" raw="$2" out="$3"
steps="${STEPS:-1000}"
weights="${WEIGHTS:-0 0.1 1}"
python="${PYTHON:-$root/.venv/bin/python}"
profile="$root/profiles/transfer.yaml"
# the profile's own teacher (train.arch.vdsr.init, pinned by sha256), unless TEACHER says otherwise
teacher="${TEACHER:-$(sed -n 's/^ *init: *\(.*#sha256=[0-9a-f]*\).*/\1/p' "$profile" | head -1)}"
asymsr() { "$python" -m asymsr.cli "$@"; }

# every check before OUT is made, so a failed start leaves nothing behind
[[ -x "$python" ]] || fail "$python: no such interpreter (set PYTHON)"
[[ -n "$teacher" ]] || fail "$profile: no pinned teacher found (set TEACHER)"
# the profile's paths are relative to the checkout: anchor a relative teacher there
[[ "$teacher" == /* || "$teacher" == *://* || ! -f "$root/${teacher%%#*}" ]] || teacher="$root/$teacher"
[[ "$teacher" == *://* || -f "${teacher%%#*}" ]] || fail "${teacher%%#*}: no such teacher file (set TEACHER)"
[[ -d "$patches" ]] || fail "$patches: no such folder"
for dir in bsd_val10 Set5 Set14; do [[ -d "$raw/$dir" ]] || fail "$raw/$dir: no such folder"; done
grep -q "loss: {teacher: 1.0, label: 0.0," "$profile" || fail "$profile: its compress.loss line has changed"
for weight in $weights; do [[ "$weight" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "WEIGHTS: $weight is not a number >= 0"; done
[[ "$steps" =~ ^[1-9][0-9]*$ ]] || fail "STEPS: $steps is not a whole number >= 1"
[[ -e "$out" ]] && fail "$out: exists; pick a new folder"
mkdir -p "$out"

for weight in $weights; do
  params="$out/label_$weight.yaml"
  sed "s/loss: {teacher: 1.0, label: 0.0,/loss: {teacher: 1.0, label: $weight,/" "$profile" > "$params"
  started=$SECONDS
  asymsr compress --params "$params" --patches "$patches" --val "$raw/bsd_val10" --teacher "$teacher" \
    --steps "$steps" --out "$out/label_$weight" --quiet
  echo $((SECONDS - started)) > "$out/label_$weight.time"
  asymsr evaluate --model "$out/label_$weight/model.pt" --data "$raw/Set5" --data "$raw/Set14" \
    --scales 2,3,4 --deploy auto --no-latency --out "$out/label_$weight.eval.json"
done
"$python" "$root/benchmarks/label_term_table.py" "$out"
