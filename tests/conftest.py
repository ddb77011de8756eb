import os
import sys
from pathlib import Path

# Triton's interpreter runs the real kernels on CPU tensors; it must be switched on before triton is
# first imported (torch_geometric imports it too), so it is set here, before any test module loads.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Two cores on CI and two pytest workers (-n 2): one thread each, so workers never oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
