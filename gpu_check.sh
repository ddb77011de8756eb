#!/usr/bin/env bash
# The GPU check of the whole project in one run (its time limits add up to about 8 min, sized for an H200),
# most important first: the GPU tests (kernels; a graphed run equals the eager one), each experiment's main
# job and the authors' loops (the README's speed targets), the kernel benchmark, then paper-scale grids.
# Everything lands in $OUT (default runs/gpu_check): machine.txt, one <target>.txt log per step, timings.csv
# (target, exit code, seconds; 124 = stopped at its time limit, so the runtime is "more than the limit"), and
# each run's own folder (summary.json has steps/s).
#   OUT=/tmp/out bash gpu_check.sh      # from anywhere; ONLY=kernels: steps 1-3 only; DRY_RUN=1: see below
# MNIST is not in git (data/ is ignored); on a machine without internet the MNIST targets need
# data/MNIST/raw copied from a checkout that has it (`python fetch_data.py mnist`); without it they are skipped.
# Without .venv the machine's own python3 is used (a .venv whose torch is a CPU-only build would not see the GPU).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TRITON_INTERPRET=0  # real kernels (conftest only sets 1 when unset); the CPU-interpreter tests skip
export PYTHONUNBUFFERED=1
# DRY_RUN=1: the plumbing on a machine without a GPU (every step on the CPU with a 1-s limit: logs, timings.csv)
DEVICE=cuda; [ -n "${DRY_RUN:-}" ] && DEVICE=cpu

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
echo "target,rc,seconds" > "$OUT/timings.csv"

# target NAME LIMIT CMD...: run CMD under a time limit (the limits add up to ~8 min), log to $OUT/NAME.txt
target() {
  local name=$1 limit=$2; shift 2
  [ -n "${DRY_RUN:-}" ] && limit=1
  local t0=$EPOCHREALTIME rc
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  rc=$?
  local s; s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "$name,$rc,$s" >> "$OUT/timings.csv"
  echo "== $name: rc=$rc, ${s} s (limit $limit)"; tail -n 4 "$OUT/$name.txt" | tr '\r' '\n' | tail -n 4
}

# 1. GPU tests: kernels on CUDA (numerics, capture, no host syncs, two launches) and graphed == eager steps;
#    GPU_REQUIRED=1 turns a skipped GPU test into a failure (tests/conftest.py)
GPU_REQUIRED=$([ -n "${DRY_RUN:-}" ] || echo 1) \
  target pytest 90 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_kernels.py tests/test_cuda_graphs.py
[ -f data/MNIST/raw/train-images-idx3-ubyte ] && MNIST=1 || {
  MNIST=; echo "== MNIST targets skipped: data/MNIST/raw is missing (copy it, see the top of this file)" | tee "$OUT/mnist_skipped.txt"; }

# 2. each experiment's main job, and the authors' loops on the same GPU (the speed-up targets)
target teacher_student_run 25 "$PY" toy_teacher_student.py --device $DEVICE --out "$OUT/teacher_student_run"
[ -n "$MNIST" ] && target mnist_run 45 "$PY" mnist_grok.py --device $DEVICE --out "$OUT/mnist_run"
[ -n "$MNIST" ] && target authors_loops_mnist 20 "$PY" bench/authors_loops.py --experiment mnist --device $DEVICE \
  --steps 1000 --out "$OUT/authors_loops_mnist"
target modadd_run 25 "$PY" modadd_transformer.py --device $DEVICE --out "$OUT/modadd_run"
target authors_loops_modadd 20 "$PY" bench/authors_loops.py --experiment modadd --device $DEVICE --out "$OUT/authors_loops_modadd"
target addition_landscape 25 "$PY" addition_landscape.py --device $DEVICE --mode landscape --out "$OUT/addition_landscape"

# 3. kernel benchmark: us per un-captured projection, every norm mode (0.025 s a cell: four modes in the time one took), GB/s up to 2^28
target kernel_bench 50 "$PY" bench/kernel_bench.py --device $DEVICE --max-size 3e8 --time-per-cell 0.025 --out "$OUT/kernel_bench"
# torch.compile or hand capture: the teacher-student step each way, compile and capture time counted
target compile_vs_capture 40 "$PY" bench/compile_vs_capture.py --device $DEVICE --experiments toy \
  --out "$OUT/compile_vs_capture"
[ "${ONLY:-}" = kernels ] && { cat "$OUT/timings.csv"; exit 0; }

# 4. paper-scale figures through reproduce.py, cheapest first (a target that hits its limit costs the least at the
#    end; run again, a stopped run resumes). Copy $OUT/reproduce/<figure>/ into runs/reproduce/paper/ of a checkout
#    and `python reproduce.py --scale paper --report-only` adds their verdicts to the paper-scale report.
#    beyond/modadd: the norm-mode comparison at p = 113 (4 x 3 runs of 15,000 steps; 3.5 h on a CPU core, published
#    in docs/reproduce-paper/beyond/modadd): here its GPU time, and steps to fit/generalize to set beside the CPU's.
target paper_fig9 45 "$PY" reproduce.py --only fig9 --scale paper --device $DEVICE --out "$OUT/reproduce"
target paper_beyond_modadd 60 "$PY" reproduce.py --only beyond/modadd --scale paper --device $DEVICE \
  --out "$OUT/reproduce"
[ -n "$MNIST" ] && target mnist_paper_fig3abc 30 "$PY" reproduce.py --only fig3abc --scale paper --device $DEVICE \
  --out "$OUT/reproduce"
cat "$OUT/timings.csv"
