#!/usr/bin/env bash
# Every GPU check of the data path, stage by stage, each under its own time limit; logs go to $OUT
# (default ./gpu-checks). Run on a CUDA machine from the repository root:
#   bash benchmarks/gpu_checks.sh                                # every stage (about 23 minutes at most)
#   bash benchmarks/gpu_checks.sh cuda_tests loader_cuda_pinned  # only the stages named
# On the offline device machine, prepare wheels first (../shared/gpu/prepare-wheels.sh) and start with
#   bash .whl/install-on-device.sh && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
# PYTHON picks the interpreter (default: `uv run --frozen python` when uv is installed, else python3).
# A failing stage is reported and the next one runs; the exit status counts the failed stages.
set -uo pipefail
OUT=${OUT:-gpu-checks}
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
    if command -v uv >/dev/null 2>&1; then PYTHON="uv run --frozen python"; else PYTHON=python3; fi
fi
failed=0
selected=" $* "
stages=""

stage() {  # stage NAME SECONDS COMMAND...; skipped when stages are named and NAME is not one of them
    local name=$1 seconds=$2
    shift 2
    stages="$stages $name"
    if [ -n "${selected// /}" ] && [[ ! "$selected" == *" $name "* ]]; then return; fi
    echo "== $name (limit ${seconds}s)" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "   exit $status after $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name.log" >>"$OUT/summary.txt"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
stage cuda_tests 240 $PYTHON -m pytest -q -m gpu -p no:cacheprovider packages/viscy-data packages/viscy-transforms
stage loader_cuda_pinned 240 $PYTHON benchmarks/loader.py --device cuda --pin-memory --num-workers 4
stage chain_cuda 180 $PYTHON benchmarks/transforms.py --part chain --device cuda
stage training_fit_bf16 300 $PYTHON benchmarks/training.py --device cuda --precision bf16-mixed --pin-memory --num-workers 4
stage training_multi_experiment 420 $PYTHON benchmarks/sampling.py --part training
for name in $selected; do
    if [[ ! "$stages " == *" $name "* ]]; then
        echo "unknown stage '$name'; the stages are:$stages" | tee -a "$OUT/summary.txt" >&2
        failed=$((failed + 1))
    fi
done
echo "$failed stage(s) failed" | tee -a "$OUT/summary.txt"
exit "$failed"
