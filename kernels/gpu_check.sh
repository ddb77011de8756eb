#!/usr/bin/env bash
# The GPU half of kernels/: real-kernel tests + benchmark, in ONE call on a CUDA machine (< 5 min on an
# H200). Results go under $OUT (default runs/gpu_check); copy the numbers into kernels/README.md.
#   OUT=/tmp/out bash kernels/gpu_check.sh        # from the repository root
# Device tool: run(command="bash kernels/gpu_check.sh", carry=[".venv"] if the venv is not there).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TRITON_INTERPRET=0  # real kernels (conftest only sets 1 when unset); the CPU-interpreter tests skip

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# 1. tests: numerics vs float64 on CUDA, CUDA-graph capture, zero host syncs, two kernels per projection
timeout 150 "$PY" -m pytest -q -rs tests/test_kernels.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$? (tail):"; tail -n 15 "$OUT/pytest.txt"

# 2. benchmark: fp32, all providers, flat sizes up to 1e9 (4 GB); then fp64 (the authors' dtype) smaller
timeout 200 "$PY" kernels/bench.py --device cuda --out "$OUT/bench_fp32" > "$OUT/bench_fp32.txt" 2>&1
echo "bench fp32 rc=$?"; cat "$OUT/bench_fp32.txt"
timeout 60 "$PY" kernels/bench.py --device cuda --dtype float64 --max-size 3e8 --time-per-cell 0.1 \
    --providers loop,foreach,triton,copy --out "$OUT/bench_fp64" > "$OUT/bench_fp64.txt" 2>&1
echo "bench fp64 rc=$?"; tail -n 16 "$OUT/bench_fp64.txt"
