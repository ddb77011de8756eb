import contextlib
import io
import os
import sys
import types
from pathlib import Path

import pytest

# Triton's interpreter runs the real kernels on CPU tensors; it must be switched on before triton is
# first imported (torch_geometric imports it too), so it is set here, before any test module loads.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Two cores on CI and two pytest workers (-n 2): one thread each, so workers never oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_main(main, argv):
    """`python <script>.py argv` in this process (no interpreter start-up): main(argv) under the scripts' error
    handling, its output captured. Returns returncode, stdout, stderr as subprocess.run's result has them."""
    import common
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            common.main_guard(lambda: main(list(argv)))
            code = 0
        except SystemExit as e:
            code = e.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


# GPU_REQUIRED=1 (gpu_check.sh sets it on a GPU machine): a GPU test that skips ("... CUDA GPU ...") fails
# instead, so a check that silently ran nothing on the GPU cannot pass.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if os.environ.get("GPU_REQUIRED") and report.skipped and "CUDA GPU" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"GPU_REQUIRED is set, but this GPU test skipped: {report.longrepr}"
