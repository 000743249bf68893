#!/usr/bin/env bash
# Full-size benchmarks (224 px frames, 3 s audio, ResNet-18 x 2, C = 512, batch 256) on one CUDA GPU,
# in a few minutes: training pairs/s and evaluation samples/s, fnac vs the reference-style pipeline,
# then the data loader against the model's consumption, then training again with torch.compile.
# 16,384 training clips (64 steps of 256 per epoch, far more than the loader's prefetch) and 2,048 test
# clips (8 evaluation batches) by default. The training table gives each path against the model step
# alone, the share of time spent waiting for batches and the GPU's utilisation (nvidia-smi) over the
# timed steps. Results are printed and written as JSON to $OUT (default bench/results/gpu). Record them
# in docs/performance.md with the machine line printed.
#
#   bash bench/gpu.sh                 # python3 from PATH (needs torch with CUDA, numpy, scipy, pillow,
#   PYTHON=/path/to/python bash bench/gpu.sh     # av, soundfile, pyyaml, tqdm); nothing is downloaded
#   COMPILE=0 bash bench/gpu.sh       # skip the torch.compile run (saves 1-2 min)
#   DEVICE=cpu COMPILE=0 N_TRAIN=64 N_TEST=16 STEPS=1 REF_STEPS=1 WARMUP=1 BATCH=8 bash bench/gpu.sh  # dry run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-bench/results/gpu}
DATA=${DATA:-bench/data/full}
DEVICE=${DEVICE:-cuda}
N=(--n-train "${N_TRAIN:-16384}" --n-test "${N_TEST:-2048}")
B=(); [ -n "${BATCH:-}" ] && B=(--batch "$BATCH")
mkdir -p "$OUT"
DEVICE=$DEVICE "$PY" - <<'PYEOF'
import os, sys, torch
if os.environ["DEVICE"].startswith("cuda") and not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no CUDA device (torch %s)" % torch.__version__)
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("GPU:", gpu, "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PYEOF
NPROC=$(nproc)
W=${WORKERS:-$(( NPROC > 4 ? NPROC - 2 : 2 ))}  # fnac loader processes: all cores but two
SECONDS=0
# the data is generated on the first call and cached once, then reused (bench/data/full)
"$PY" bench/bench_train.py --size full --data "$DATA" "${N[@]}" "${B[@]}" --device "$DEVICE" --workers "$W" \
    --ref-workers 2 --steps "${STEPS:-30}" --ref-steps "${REF_STEPS:-8}" --warmup "${WARMUP:-5}" \
    --json "$OUT/train_full.json"
echo "[gpu.sh] ${SECONDS} s"
"$PY" bench/bench_eval.py --size full --data "$DATA" "${N[@]}" "${B[@]}" --device "$DEVICE" --workers "$W" \
    --ref-workers 2 --json "$OUT/eval_full.json"
echo "[gpu.sh] ${SECONDS} s"
"$PY" bench/bench_loader.py --size full --data "$DATA" "${N[@]}" "${B[@]}" --device "$DEVICE" --workers "$W" \
    --seconds 8 --paths reference,cache --json "$OUT/loader_full.json"
echo "[gpu.sh] ${SECONDS} s"
if [ "${COMPILE:-1}" = "1" ]; then
    "$PY" bench/bench_train.py --size full --data "$DATA" "${N[@]}" "${B[@]}" --device "$DEVICE" \
        --workers "$W" --paths cache,model --compile --steps "${STEPS:-30}" --warmup "${WARMUP:-5}" \
        --json "$OUT/train_full_compiled.json"
    echo "[gpu.sh] ${SECONDS} s"
fi
