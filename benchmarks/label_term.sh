#!/usr/bin/env bash
# Does a label term help the distillation? The transfer profile with compress.loss.label set to
# each of WEIGHTS (default 0 0.1 1; teacher weight 1), a shorter fine-tuning (STEPS, default
# 1,000), each model scored on Set5 and Set14 at x2/x3/x4; runs one after another (2 cores).
#   benchmarks/label_term.sh DATA OUT      DATA: the transfer profile's data, as in
#   docs/compression.md (DATA/patches, DATA/bsd_val10, DATA/Set5, DATA/Set14)
# Writes OUT/label_<w>/ (compress's folder), OUT/label_<w>.eval.json, OUT/label_<w>.time (the
# compress call's wall seconds), then OUT.md and OUT.json (benchmarks/label_term_table.py).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${1:?usage: label_term.sh DATA OUT}"
out="${2:?usage: label_term.sh DATA OUT}"
steps="${STEPS:-1000}"
weights="${WEIGHTS:-0 0.1 1}"
python="${PYTHON:-$root/.venv/bin/python}"
teacher="$root/../shared/reference/vdsr_reference_x234.npz#sha256=610afbe725f0432d983297114fff114381569f0f886ff559db52f3d10f50d59c"
asymsr() { "$python" -m asymsr.cli "$@"; }

for dir in patches bsd_val10 Set5 Set14; do
  [[ -d "$data/$dir" ]] || { echo "label_term.sh: $data/$dir: no such folder" >&2; exit 2; }
done
[[ -e "$out" ]] && { echo "label_term.sh: $out: exists; pick a new folder" >&2; exit 2; }
mkdir -p "$out"

for weight in $weights; do
  params="$out/label_$weight.yaml"
  # the profile's own loss line, with only the label weight changed
  sed "s/loss: {teacher: 1.0, label: 0.0,/loss: {teacher: 1.0, label: $weight,/" "$root/profiles/transfer.yaml" > "$params"
  grep -q "label: $weight," "$params" || { echo "label_term.sh: profiles/transfer.yaml: loss line not found" >&2; exit 2; }
  started=$SECONDS
  asymsr compress --params "$params" --patches "$data/patches" --val "$data/bsd_val10" --teacher "$teacher" \
    --steps "$steps" --out "$out/label_$weight" --quiet
  echo $((SECONDS - started)) > "$out/label_$weight.time"
  asymsr evaluate --model "$out/label_$weight/model.pt" --data "$data/Set5" --data "$data/Set14" \
    --scales 2,3,4 --deploy auto --no-latency --out "$out/label_$weight.eval.json"
done
"$python" "$root/benchmarks/label_term_table.py" "$out"
