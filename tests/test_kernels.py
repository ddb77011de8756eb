"""kernels/: the fused Triton projection and its torch reference, against a float64 reference.

On a CPU-only machine the Triton kernels run through Triton's interpreter (TRITON_INTERPRET=1, set in
conftest.py before triton's first import), so "torch" and "triton" go through the same tests. The
interpreter costs ~3 ms per kernel program, so the lists stay small (about 30 tensors, one test with
300) and a few tests shrink BLOCK / MAX_CHUNKS to reach the multi-tile and multi-chunk code paths.
GPU-only checks (CUDA graph capture, zero host syncs, two kernels per projection) skip without CUDA;
test_kernels_compile_for_h100_h200 still compiles the real kernels to PTX without a GPU.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels import norm_project as K

REPO = Path(__file__).resolve().parents[1]
needs_triton = pytest.mark.skipif(not K.HAVE_TRITON, reason="triton is not installed")
# Triton on CPU tensors = the interpreter (conftest sets TRITON_INTERPRET=1); real kernels on CUDA
# tensors need it off (gpu_check.sh runs this file with TRITON_INTERPRET=0 on a GPU machine).
interpreted = pytest.mark.skipif(not K.INTERPRETED, reason="Triton on CPU tensors needs TRITON_INTERPRET=1")
needs_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and K.HAVE_TRITON and not K.INTERPRETED),
                               reason="needs a CUDA GPU and compiled Triton (TRITON_INTERPRET=0)")
BACKENDS = ["torch", pytest.param("triton", marks=interpreted)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
AWKWARD = [1, 7, 1023, 4097, 2, 3, 33, 130, 511, (3, 7), (5, 1, 4)]
# Relative tolerance on rescaled values: the dtype's rounding (one rounding in Triton, two in the torch
# path's `x * scale.to(dtype)`), with room; norms are summed in fp32/fp64 from exact inputs.
VALUE_RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
NORM_RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-5, torch.float16: 1e-5}


def random_list(n_tensors, dtype, seed, E=None, device="cpu"):
    """n_tensors tensors of awkward shapes and magnitudes (log-uniform over 1e-2..1e1 per tensor)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_tensors):
        shape = AWKWARD[int(torch.randint(len(AWKWARD), (1,), generator=g))]
        shape = (shape,) if isinstance(shape, int) else shape
        scale = 10 ** (3 * float(torch.rand((), generator=g)) - 2)
        x = scale * torch.randn(((E,) if E else ()) + shape, generator=g, dtype=torch.float64)
        out.append(x.to(device, dtype))
    return out


def f64(tensors):
    # A float64 copy on the CPU (.double() of a float64 tensor would be the tensor itself).
    return [t.detach().to("cpu", torch.float64, copy=True) for t in tensors]


def check_projected(after, before64, norm, target, dims=None):
    """after = before64 * target / ||before64|| (per model if dims), norm = ||before64||."""
    dtype = after[0].dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    if dims is None:  # global: one norm
        ref = torch.stack([b.pow(2).sum() for b in before64]).sum().sqrt()
        shape = ()
    else:             # batched: one norm per model (leading dim)
        ref = torch.stack([b.reshape(b.shape[0], -1).pow(2).sum(1) for b in before64]).sum(0).sqrt()
        shape = (ref.numel(),)
    assert norm.dtype == acc and tuple(norm.shape) == shape
    torch.testing.assert_close(norm.double().cpu(), ref, rtol=NORM_RTOL[dtype], atol=0)
    target = torch.as_tensor(target, dtype=torch.float64).cpu().expand_as(ref)
    scale = torch.where(ref > 0, target / ref, torch.ones_like(ref))
    rtol = VALUE_RTOL[dtype]
    for a, b in zip(after, before64):
        s = scale.view(-1, *[1] * (b.dim() - 1)) if dims is not None else scale
        exp = b * s
        # atol: fp16 values below its normal range (~6e-5) keep only absolute precision.
        torch.testing.assert_close(a.double().cpu(), exp, rtol=rtol, atol=1e-7 + rtol * 1e-4 * float(exp.abs().max()))


@pytest.fixture
def small_tiles(monkeypatch):
    # 32-element tiles and chunk lengths grown to keep <= 8 chunks per list: with small tensors this
    # still covers chunks of several tiles, tensors split over several chunks, and ragged tails.
    monkeypatch.setattr(K, "BLOCK", 32)
    monkeypatch.setattr(K, "MAX_CHUNKS", 8)


# ----------------------------------------------------------------------------------------------
# correctness against float64, both backends through the same tests
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_project_to_norm_matches_float64(backend, dtype):
    n = 1 + int(torch.randint(40, (1,), generator=torch.Generator().manual_seed(DTYPES.index(dtype))))
    tensors = random_list(n, dtype, seed=n)
    before = f64(tensors)
    torch.testing.assert_close(kernels.global_norm(tensors, backend=backend).double(),
                               torch.stack([b.norm() for b in before]).norm(), rtol=NORM_RTOL[dtype], atol=0)
    norm = kernels.project_to_norm_(tensors, 2.5, backend=backend)  # target as a Python float
    check_projected(tensors, before, norm, 2.5)
    before = f64(tensors)
    norm = kernels.project_to_norm_(tensors, torch.tensor(0.75), backend=backend)  # ... and as a 0-d tensor
    check_projected(tensors, before, norm, 0.75)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_multi_tile_multi_chunk_paths(dtype, small_tiles):
    tensors = random_list(12, dtype, seed=1)
    tab = K.chunk_table(tensors, batched=False)
    assert tab.n_chunks > len(tensors) and int(tab.numel.max()) > K.BLOCK  # chunks split and span tiles
    before = f64(tensors)
    norm = kernels.project_to_norm_(tensors, 3.0, backend="triton")
    check_projected(tensors, before, norm, 3.0)
    tensors = random_list(5, dtype, seed=2, E=3)
    before = f64(tensors)
    norms = kernels.project_to_norm_batched_(tensors, torch.tensor([1.0, 2.0, 3.0]), backend="triton")
    check_projected(tensors, before, norms, [1.0, 2.0, 3.0], dims=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_300_tensors_one_table(backend):
    # The chunk table is a device tensor with no size limit: 300 tensors (~350 chunks) take one launch
    # each, like 6 do.
    tensors = random_list(300, torch.float32, seed=3)
    before = f64(tensors)
    norm = kernels.project_to_norm_(tensors, 10.0, backend=backend)
    check_projected(tensors, before, norm, 10.0)
    if backend == "triton":
        assert K.chunk_table(tensors, batched=False).n_chunks >= 300


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_matches_float64(backend, dtype):
    E = 3
    tensors = random_list(7, dtype, seed=4, E=E)
    for target in (1.5, torch.tensor(0.5), torch.tensor([0.5, 1.0, 2.0])):  # float, 0-d, one per model
        before = f64(tensors)
        norms = kernels.project_to_norm_batched_(tensors, target, backend=backend)
        check_projected(tensors, before, norms, target, dims=True)
    ref = torch.stack([t.double().reshape(E, -1).pow(2).sum(1) for t in tensors]).sum(0).sqrt()
    torch.testing.assert_close(kernels.batched_norm(tensors, backend=backend).double(), ref,
                               rtol=NORM_RTOL[dtype], atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_norm_leaves_tensors_unchanged(backend):
    zeros = [torch.zeros(7), torch.zeros(3, 5)]
    norm = kernels.project_to_norm_(zeros, 2.0, backend=backend)
    assert float(norm) == 0.0 and all(bool((z == 0).all()) for z in zeros)  # no NaN, no change
    tensors = random_list(4, torch.float32, seed=5, E=3)
    for t in tensors:
        t[1] = 0  # model 1 is all zeros, models 0 and 2 are not
    before = f64(tensors)
    norms = kernels.project_to_norm_batched_(tensors, 2.0, backend=backend)
    assert float(norms[1]) == 0.0 and all(bool((t[1] == 0).all()) for t in tensors)
    check_projected(tensors, before, norms, 2.0, dims=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the interpreter's numpy, squaring 1e30
@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_or_nan_norm_leaves_tensors_unchanged(backend):
    for bad in (float("inf"), float("nan")):
        tensors = [torch.tensor([1.0, bad]), torch.randn(5)]
        before = [t.clone() for t in tensors]
        norm = kernels.project_to_norm_(tensors, 1.0, backend=backend)
        assert not torch.isfinite(norm)
        for a, b in zip(tensors, before):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    big = [torch.full((4,), 1e30, dtype=torch.bfloat16)]  # its squares overflow fp32: norm inf
    norm = kernels.project_to_norm_(big, 1.0, backend=backend)
    assert float(norm) == float("inf") and bool((big[0] == torch.tensor(1e30, dtype=torch.bfloat16)).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_bit_for_bit(backend):
    a = random_list(30, torch.float32, seed=6)
    b = [t.clone() for t in a]
    na, nb = (kernels.project_to_norm_(x, 1.0, backend=backend) for x in (a, b))
    assert torch.equal(na, nb) and all(torch.equal(x, y) for x, y in zip(a, b))
    ea, eb = random_list(5, torch.float32, seed=7, E=4), None
    eb = [t.clone() for t in ea]
    na, nb = (kernels.project_to_norm_batched_(x, 1.0, backend=backend) for x in (ea, eb))
    assert torch.equal(na, nb) and all(torch.equal(x, y) for x, y in zip(ea, eb))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nn_parameters_then_backward(backend):
    # The scripts' use: leaf parameters that require grad, rescaled between optimizer steps.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 33), torch.nn.Tanh(), torch.nn.Linear(33, 5))
    params = list(model.parameters())
    before = f64(params)
    norm = kernels.project_to_norm_(params, 4.0, backend=backend)
    check_projected([p.detach() for p in params], before, norm, 4.0)
    model(torch.randn(3, 7)).sum().backward()
    assert all(p.grad is not None for p in params)


# ----------------------------------------------------------------------------------------------
# launches, the cached table, dispatch and errors
# ----------------------------------------------------------------------------------------------
class CountLaunches:
    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


@interpreted
def test_two_launches_and_table_built_once(monkeypatch):
    k1, k2 = CountLaunches(K._sumsq_kernel), CountLaunches(K._norm_rescale_kernel)
    monkeypatch.setattr(K, "_sumsq_kernel", k1)
    monkeypatch.setattr(K, "_norm_rescale_kernel", k2)
    tensors = random_list(20, torch.float32, seed=8)
    builds = K.table_builds
    for _ in range(3):
        kernels.project_to_norm_(tensors, 1.0, backend="triton")
    assert (k1.launches, k2.launches) == (3, 3) and K.table_builds == builds + 1
    kernels.global_norm(tensors, backend="triton")
    assert (k1.launches, k2.launches) == (4, 4) and K.table_builds == builds + 1  # same table
    ens = random_list(3, torch.float32, seed=9, E=2)
    kernels.project_to_norm_batched_(ens, torch.tensor([1.0, 2.0]), backend="triton")
    assert (k1.launches, k2.launches) == (5, 5) and K.table_builds == builds + 2


@interpreted
def test_errors_and_fallbacks():
    # What the Triton path can't take but the torch path can (bad arguments: test_bad_arguments_refused_...).
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.project_to_norm_([x.t()], 1.0, backend="triton")
    with pytest.raises(ValueError, match="one dtype"):
        kernels.global_norm([x, x.double()], backend="triton")
    # auto on CPU: the torch path, whatever the layout
    t, before = x.t(), float(x.norm())
    norm = kernels.project_to_norm_([t], 1.0)
    assert abs(float(norm) - before) < 1e-5 and abs(float(t.norm()) - 1.0) < 1e-5


# Bad arguments, refused by kernels._check before either path runs: (id, make, exception, message), where
# make() -> (function, *args) with fresh tensors; "meta" tensors stand in for another device (no GPU needed).
def _x():
    return torch.randn(3, 4)  # as a batched tensor: E = 3


P, PB, N, BN = kernels.project_to_norm_, kernels.project_to_norm_batched_, kernels.global_norm, kernels.batched_norm
BAD_ARGS = [
    # targets given as numbers
    ("negative target", lambda: (P, [_x()], -2.0), ValueError, r"target must be finite and >= 0, got -2.0"),
    ("nan target", lambda: (P, [_x()], float("nan")), ValueError, r"finite and >= 0, got nan"),
    ("inf target", lambda: (P, [_x()], float("inf")), ValueError, r"finite and >= 0, got inf"),
    ("batched negative target", lambda: (PB, [_x()], -1), ValueError, r"finite and >= 0, got -1"),
    ("negative in target list", lambda: (PB, [_x()], [1.0, -1.0, 2.0]), ValueError, r"target\[1\] must be finite"),
    ("bool target", lambda: (P, [_x()], True), TypeError, r"target must be a number .*got bool"),
    ("None target", lambda: (P, [_x()], None), TypeError, r"target must be a number .*got NoneType"),
    ("list target, non-batched", lambda: (P, [_x()], [1.0]), TypeError, r"got list"),
    ("list of E' targets", lambda: (PB, [_x()], [1.0, 2.0]), ValueError, r"\(E = 3\); got a list of 2"),
    # targets given as tensors: shape, dtype, device (never their values: that would be a host sync)
    ("[E] target, non-batched", lambda: (P, [_x()], torch.ones(3)), ValueError,
     r"a number or a 0-d tensor; got a tensor of shape \(3,\)"),
    ("[1] target, non-batched", lambda: (P, [_x()], torch.ones(1)), ValueError, r"shape \(1,\)"),
    ("[E'] targets", lambda: (PB, [_x()], torch.ones(2)), ValueError, r"\(E = 3\); got a tensor of shape \(2,\)"),
    ("[E, 1] targets", lambda: (PB, [_x()], torch.ones(3, 1)), ValueError, r"shape \(3, 1\)"),
    ("int target tensor", lambda: (P, [_x()], torch.tensor(2)), TypeError, r"target has dtype torch.int64"),
    ("target on another device", lambda: (P, [_x()], torch.tensor(2.0, device="meta")), ValueError,
     r"target is on meta, the tensors on cpu"),
    # the list of tensors
    ("single tensor, batched_norm", lambda: (BN, _x()), TypeError, r"got a single tensor: pass \[tensor\]"),
    ("single tensor, project", lambda: (P, _x(), 1.0), TypeError, r"got a single tensor: pass \[tensor\]"),
    ("not iterable", lambda: (N, None), TypeError, r"list of tensors, got NoneType"),
    ("empty list", lambda: (P, [], 1.0), ValueError, r"tensors is empty"),
    ("non-tensor element", lambda: (P, [_x(), 3.0], 1.0), TypeError, r"tensors\[1\] is a float"),
    ("int tensor", lambda: (P, [_x(), torch.arange(3)], 1.0), TypeError, r"tensors\[1\] has dtype torch.int64"),
    ("complex tensor", lambda: (N, [torch.ones(2, dtype=torch.complex64)]), TypeError, r"dtype torch.complex64"),
    ("two devices", lambda: (P, [_x(), torch.ones(2, device="meta")], 1.0), ValueError,
     r"one device: tensors\[0\] is on cpu, tensors\[1\] on meta"),
    ("batched 0-d tensor", lambda: (PB, [_x(), torch.tensor(1.0)], 1.0), ValueError,
     r"leading ensemble dim E >= 1; tensors\[1\] has shape \(\)"),
    ("batched E = 0", lambda: (BN, [torch.ones(0, 4)]), ValueError, r"E >= 1"),
    ("batched different E", lambda: (PB, [_x(), torch.ones(2, 4)], 1.0), ValueError,
     r"tensors\[0\] has E = 3, tensors\[1\] has shape \(2, 4\)"),
    ("bad backend", lambda: (P, [_x()], 1.0), ValueError, r"backend must be 'auto', 'torch' or 'triton'"),
]


@pytest.mark.parametrize("backend", ["torch", "triton", "auto"])  # refused before dispatch: no interpreter needed
@pytest.mark.parametrize("case", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_refused_on_both_paths(case, backend):
    name, make, exc, match = case
    fn, *args = make()
    kept = [a for arg in args for a in (arg if isinstance(arg, list) else [arg])
            if isinstance(a, torch.Tensor) and a.device.type != "meta"]
    before = [t.clone() for t in kept]
    with pytest.raises(exc, match=match):
        fn(*args, backend=backend + "x" if name == "bad backend" else backend)  # that case misspells it
    assert all(torch.equal(a, b) for a, b in zip(kept, before))  # a refused call changes nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_edge_arguments_accepted(backend):
    # The contract's edges, on both paths: target 0 (zeroes the tensors, returns the old norm), an int or
    # numpy target, a tuple or a generator of tensors, E targets as a list, a 0-d float64 target.
    import numpy as np
    x = torch.randn(3, 4)
    ref = float(x.norm())
    assert abs(float(kernels.project_to_norm_((x,), 0, backend=backend)) - ref) < 1e-5 and not x.any()
    x = torch.randn(3, 4)
    kernels.project_to_norm_((t for t in [x]), np.float32(2.0), backend=backend)
    assert abs(float(x.norm()) - 2.0) < 1e-5
    kernels.project_to_norm_([x], torch.tensor(3.0, dtype=torch.float64), backend=backend)
    assert abs(float(x.norm()) - 3.0) < 1e-5
    kernels.project_to_norm_batched_([x], [1, 2.0, 0.5], backend=backend)
    torch.testing.assert_close(x.norm(dim=1), torch.tensor([1.0, 2.0, 0.5]))


def test_mixed_dtypes_on_the_torch_path():
    # The reported case first: float32 before float64. Accumulation in float64 if any tensor is float64
    # (else float32), each tensor rescaled with the scale cast to its own dtype; Triton refuses mixed lists.
    mixed = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
    for dtypes, acc in [(mixed, torch.float64), ([torch.bfloat16, torch.float32], torch.float32)]:
        tensors = [t for i, dt in enumerate(dtypes) for t in random_list(2, dt, seed=20 + i)]
        before = f64(tensors)
        ref = torch.stack([b.norm() for b in before]).norm()
        for backend in ("torch", "auto"):  # auto on CPU is the torch path
            norm = kernels.global_norm(tensors, backend=backend)
            assert norm.dtype == acc
            torch.testing.assert_close(norm.double(), ref, rtol=1e-5, atol=0)
        norm = kernels.project_to_norm_(tensors, torch.tensor(2.0), backend="torch")
        assert norm.dtype == acc
        torch.testing.assert_close(norm.double(), ref, rtol=1e-5, atol=0)
        for a, b in zip(tensors, before):
            torch.testing.assert_close(a.double(), b * 2.0 / ref, rtol=VALUE_RTOL[a.dtype], atol=1e-7)
        ens = [t for i, dt in enumerate(dtypes) for t in random_list(2, dt, seed=30 + i, E=3)]
        before = f64(ens)
        ref = torch.stack([b.reshape(3, -1).pow(2).sum(1) for b in before]).sum(0).sqrt()
        norms = kernels.project_to_norm_batched_(ens, torch.tensor([1.0, 2.0, 3.0]), backend="torch")
        assert norms.dtype == acc
        torch.testing.assert_close(norms.double(), ref, rtol=1e-5, atol=0)
        for a, b in zip(ens, before):
            exp = b * (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / ref).view(-1, *[1] * (b.dim() - 1))
            torch.testing.assert_close(a.double(), exp, rtol=VALUE_RTOL[a.dtype], atol=1e-7)
    if K.INTERPRETED:  # (on a GPU machine CPU tensors are refused by Triton first, for that reason)
        with pytest.raises(ValueError, match="one dtype"):
            kernels.global_norm(tensors, backend="triton")


def test_import_and_torch_path_without_triton():
    # macOS / CPU-only installs: `import kernels` and the torch path work when triton can't import.
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, kernels\n"
            "from kernels import norm_project as K\n"
            "assert not K.HAVE_TRITON\n"
            "t = [torch.ones(3), torch.ones(4, 4)]\n"
            "assert abs(float(kernels.project_to_norm_(t, 2.0)) - 19 ** 0.5) < 1e-5\n"
            "assert abs(float(kernels.global_norm(t)) - 2.0) < 1e-5\n"
            "try:\n    kernels.global_norm(t, backend='triton')\nexcept ValueError as e:\n"
            "    assert 'not installed' in str(e)\nelse:\n    raise AssertionError('no error')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@needs_triton
def test_kernels_compile_for_h100_h200():
    # Without a GPU: compile the real (not interpreted) kernels for sm_90 to PTX, and check that aligned
    # lists get 16-byte vector loads/stores (a bandwidth-bound kernel needs them) and that the norm
    # uses the correctly rounded sqrt and division.
    code = r'''
import re, triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels import norm_project as K
assert not K.INTERPRETED
for dtype, acc in [(tl.float32, tl.float32), (tl.float64, tl.float64), (tl.bfloat16, tl.float32), (tl.float16, tl.float32)]:
    a = "fp64" if acc == tl.float64 else "fp32"
    common = {"addr_ptr": "*i64", "numel_ptr": "*i64"}
    k1 = ASTSource(K._sumsq_kernel, signature={**common, "partial_ptr": "*" + a, "DTYPE": "constexpr", "ACC": "constexpr",
                   "BLOCK": "constexpr", "ALIGNED": "constexpr"},
                   constexprs={"DTYPE": dtype, "ACC": acc, "BLOCK": K.BLOCK, "ALIGNED": True})
    sig2 = {**common, "seg_ptr": "*i64", "seg_start_ptr": "*i64", "partial_ptr": "*" + a, "norm_ptr": "*" + a,
            "target_ptr": "*fp32", "target_stride": "i32", "target_val": "fp64"}
    sig2.update({k: "constexpr" for k in ["DTYPE", "ACC", "BLOCK", "RBLOCK", "ALIGNED", "TARGET_PTR", "CAP", "RESCALE"]})
    for rescale, target_ptr, aligned, cap in [(True, True, True, False), (True, False, True, False), (False, False, True, False),
                                              (True, False, False, False), (True, True, True, True), (True, False, True, True)]:
        k2 = ASTSource(K._norm_rescale_kernel, signature=sig2, constexprs={"DTYPE": dtype, "ACC": acc, "BLOCK": K.BLOCK,
                       "RBLOCK": K.RBLOCK, "ALIGNED": aligned, "TARGET_PTR": target_ptr, "CAP": cap, "RESCALE": rescale})
        ptx = triton.compile(k2, target=GPUTarget("cuda", 90, 32), options={"num_warps": K.NUM_WARPS}).asm["ptx"]
        assert ("sqrt.rn." in ptx) and ("sqrt.approx" not in ptx), dtype
        if rescale:
            assert "div.rn." in ptx and ("ld.global.v" in ptx and "st.global.v" in ptx) == aligned, dtype
    ptx = triton.compile(k1, target=GPUTarget("cuda", 90, 32), options={"num_warps": K.NUM_WARPS}).asm["ptx"]
    assert "ld.global.v" in ptx, dtype
print("ok")
'''
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_bench_runs_on_cpu(tmp_path):
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, "bench/kernel_bench.py", "--device", "cpu", "--max-size", "1e5", "--out", str(out),
                        "--time-per-cell", "0.02"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert {r["provider"] for r in rows} == {"loop", "foreach"}  # Triton providers are CUDA-only
    assert {r["mode"] for r in rows} == set(kernels.MODES)
    assert len(rows) == 8 * 2 * len(kernels.MODES)  # every case x provider x mode
    assert all(float(r["vs_global"]) == 1.0 for r in rows if r["mode"] == "global")
    assert all(0 < float(r["vs_global"]) < 100 for r in rows)
    assert {r["case"] for r in rows} == {"teacher_student", "mnist_mlp", "imdb_lstm", "qm9_gcn",
                                         "modadd_transformer", "addition_decoder", "flat_1e4", "flat_1e5"}
    assert all(0 < float(r["median_us"]) < 1e6 and float(r["gb_per_s"]) > 0 for r in rows)
    assert rows[0]["device"] and rows[0]["torch"] == torch.__version__ and rows[0]["date"]
    assert (out / "bench.png").stat().st_size > 10_000 and (out / "bench.json").exists()


def test_bench_runs_batched_on_cpu(tmp_path):
    # --ensemble E: the batched form, every mode, targets per member (and per tensor), one flat [E, n/E] case.
    # In this process (the script itself: test_bench_runs_on_cpu), to keep it short.
    import importlib.util
    spec = importlib.util.spec_from_file_location("kernel_bench", REPO / "bench" / "kernel_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, threads = tmp_path / "bench", torch.get_num_threads()
    try:
        bench.main(["--device", "cpu", "--max-size", "1e4", "--out", str(out), "--time-per-cell", "0.005",
                    "--ensemble", "3"])
    finally:
        torch.set_num_threads(threads)
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert {r["mode"] for r in rows} == set(kernels.MODES) and {r["ensemble"] for r in rows} == {"3"}
    assert len(rows) == 7 * 2 * len(kernels.MODES) and all(0 < float(r["vs_global"]) < 100 for r in rows)
    mnist = [r for r in rows if r["case"] == "mnist_mlp"]
    assert {int(r["n_params"]) for r in mnist} == {3 * 199_210}


# ----------------------------------------------------------------------------------------------
# GPU only: the real kernels, CUDA graphs, host syncs, kernel count
# ----------------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_matches_float64(dtype):
    tensors = random_list(40, dtype, seed=10, device="cuda") + [torch.randn(3_000_001, device="cuda").to(dtype)]
    before, builds = f64(tensors), K.table_builds
    norm = kernels.project_to_norm_(tensors, 2.0)  # auto -> Triton on CUDA
    assert K.table_builds == builds + 1
    check_projected(tensors, before, norm, 2.0)
    ens = random_list(6, dtype, seed=11, E=5, device="cuda")
    before = f64(ens)
    targets = torch.arange(1.0, 6.0, device="cuda")
    norms = kernels.project_to_norm_batched_(ens, targets)
    check_projected(ens, before, norms, targets.cpu(), dims=True)


@needs_gpu
def test_cuda_graph_capture_and_no_host_sync():
    params = random_list(30, torch.float32, seed=12, device="cuda")
    target = torch.tensor(3.0, device="cuda")
    kernels.project_to_norm_(params, target)  # builds the chunk table (a host->device copy) before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        norm = kernels.project_to_norm_(params, target)
    for p in params:
        p.mul_(5.0)
    target.fill_(0.5)  # the graph reads the target from device memory: a new value needs no re-capture
    graph.replay()
    torch.cuda.synchronize()
    assert abs(float(norm) - 15.0) < 1e-3 and abs(float(kernels.global_norm(params, backend="torch")) - 0.5) < 1e-5
    ens = random_list(4, torch.float32, seed=13, E=3, device="cuda")
    targets = torch.ones(3, device="cuda")
    kernels.project_to_norm_batched_(ens, targets)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync below raises
    try:
        for backend in ("triton", "torch", "triton"):
            kernels.project_to_norm_(params, target, backend=backend)
            kernels.project_to_norm_(params, 2.0, backend=backend)
            kernels.global_norm(params, backend=backend)
            kernels.project_to_norm_batched_(ens, targets, backend=backend)
            kernels.project_to_norm_batched_(ens, 1.0, backend=backend)
            kernels.batched_norm(ens, backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_gpu
def test_cuda_two_kernels_per_projection():
    from torch.profiler import ProfilerActivity, profile
    params = random_list(30, torch.float32, seed=14, device="cuda")
    kernels.project_to_norm_(params, 1.0)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        kernels.project_to_norm_(params, 1.0)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert len(names) == 2 and "_sumsq_kernel" in names[0] and "_norm_rescale_kernel" in names[1], names
