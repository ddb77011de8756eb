#!/usr/bin/env bash
# The GPU check of the whole project in one run (its time limits add up to under 8 min, sized for an H200):
# the kernel tests and benchmark, the CUDA-graph numerics tests (a graphed run equals the eager one), then
# the wall time of every GPU target in README.md. Everything lands in $OUT (default runs/gpu_check):
# machine.txt, one <target>.txt log per step, timings.csv (target, exit code, seconds; 124 = stopped at its time limit,
# so the runtime is "more than the limit"), and each run's own folder (summary.json has steps/s).
#   OUT=/tmp/out bash gpu_check.sh               # from anywhere; ONLY=kernels: steps 1-2 only
# MNIST is not in git (data/ is ignored); on a machine without internet the MNIST targets need
# data/MNIST/raw copied from a checkout that has it (`python mnist_grok.py --mode fetch`); without it they are skipped.
# Without .venv the machine's own python3 is used (a .venv whose torch is a CPU-only build would not see the GPU).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TRITON_INTERPRET=0  # real kernels (conftest only sets 1 when unset); the CPU-interpreter tests skip
export PYTHONUNBUFFERED=1

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
echo "target,rc,seconds" > "$OUT/timings.csv"

# target NAME LIMIT CMD...: run CMD under a time limit (the limits add up to < 8 min), log to $OUT/NAME.txt
target() {
  local name=$1 limit=$2; shift 2
  local t0=$EPOCHREALTIME rc
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  rc=$?
  local s; s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "$name,$rc,$s" >> "$OUT/timings.csv"
  echo "== $name: rc=$rc, ${s} s (limit $limit)"; tail -n 4 "$OUT/$name.txt" | tr '\r' '\n' | tail -n 4
}

# 1. tests: kernels on CUDA (numerics, capture, no host syncs, two launches) and graphed == eager steps
target pytest 100 "$PY" -m pytest -q -rs tests/test_kernels.py tests/test_cuda_graphs.py
# 2. kernel benchmark: us per un-captured projection at the paper's model sizes, GB/s up to 2^28 (and 3e8)
target kernel_bench 60 "$PY" kernels/bench.py --device cuda --max-size 3e8 --time-per-cell 0.1 --out "$OUT/kernel_bench"
[ "${ONLY:-}" = kernels ] && exit 0

# 3. the experiments, cheapest first (a target that hits its limit costs the least at the end)
target teacher_student_run 25 "$PY" toy_teacher_student.py --device cuda --out "$OUT/teacher_student_run"
target modadd_run 25 "$PY" modadd_transformer.py --device cuda --out "$OUT/modadd_run"
target authors_loops_modadd 20 "$PY" bench/authors_loops.py --experiment modadd --device cuda --out "$OUT/authors_loops_modadd"
target modadd_landscape 30 "$PY" modadd_transformer.py --device cuda --mode landscape --out "$OUT/modadd_landscape"
target addition_landscape 30 "$PY" addition_landscape.py --device cuda --mode landscape --out "$OUT/addition_landscape"
if [ -f data/MNIST/raw/train-images-idx3-ubyte ]; then
  target mnist_run 45 "$PY" mnist_grok.py --device cuda --offline --out "$OUT/mnist_run"
  target authors_loops_mnist 20 "$PY" bench/authors_loops.py --experiment mnist --device cuda --steps 1000 --offline --out "$OUT/authors_loops_mnist"
  target mnist_paper_grid 55 "$PY" mnist_grok.py --device cuda --offline --mode landscape --paper-grid --out "$OUT/mnist_paper_grid"
else
  echo "== MNIST targets skipped: data/MNIST/raw is missing (carry it, see the top of this file)" | tee "$OUT/mnist_skipped.txt"
fi
target modadd_wd_sweep 60 "$PY" modadd_transformer.py --device cuda --mode wd-sweep --out "$OUT/modadd_wd_sweep"
cat "$OUT/timings.csv"
