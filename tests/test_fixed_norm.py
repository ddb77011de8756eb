"""kernels' projection modes (global, per_tensor, cap, cap_per_tensor) and FixedNorm, the drop-in for any
training loop: each mode against a plain-torch float64 reference on both paths (the Triton kernels through
the interpreter on CPU, as in test_kernels.py), edge cases, the old API unchanged, and FixedNorm copied
alone (kernels/ only) into an empty folder, on a model none of the scripts uses.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import kernels
from kernels import norm_project as K
from test_kernels import BACKENDS, DTYPES, NORM_RTOL, REPO, VALUE_RTOL, CountLaunches, f64, interpreted, \
    needs_gpu, random_list

MODES = list(kernels.MODES)
PER_TENSOR = {"per_tensor", "cap_per_tensor"}


@pytest.fixture
def small_tiles(monkeypatch):
    # As in test_kernels.py: 32-element tiles, chunk lengths grown to keep <= 8 chunks per list.
    monkeypatch.setattr(K, "BLOCK", 32)
    monkeypatch.setattr(K, "MAX_CHUNKS", 8)


def reference(before64, target, mode):
    """(norm(s) before, expected tensors) in float64: the mode's definition written out in plain torch."""
    norms = torch.stack([b.pow(2).sum().sqrt() for b in before64])
    norm = norms if mode in PER_TENSOR else norms.pow(2).sum().sqrt()
    t = torch.as_tensor(target, dtype=torch.float64).expand_as(norm)
    rescale = (norm > t if mode.startswith("cap") else norm > 0) & torch.isfinite(norm)
    scale = torch.where(rescale, t / norm, torch.ones_like(norm))
    return norm, [b * (scale[i] if mode in PER_TENSOR else scale) for i, b in enumerate(before64)]


def check_mode(tensors, before64, got_norm, target, mode):
    dtype = tensors[0].dtype
    ref_norm, expected = reference(before64, target, mode)
    assert got_norm.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert got_norm.shape == ref_norm.shape
    torch.testing.assert_close(got_norm.double().cpu(), ref_norm, rtol=NORM_RTOL[dtype], atol=0)
    rtol = VALUE_RTOL[dtype]
    for a, exp in zip(tensors, expected):
        atol = 1e-7 + rtol * 1e-4 * float(exp.abs().max()) if exp.numel() else 0
        torch.testing.assert_close(a.double().cpu(), exp, rtol=rtol, atol=atol)


def targets_for(tensors, mode, seed):
    """Targets that put some norms above and some below their target: a number, a 0-d tensor, and for the
    per-tensor modes an [N] tensor and a list of N numbers."""
    g = torch.Generator().manual_seed(seed)
    norms = torch.stack([t.double().norm() for t in tensors]).cpu()
    glob = float(norms.norm())
    out = [0.7 * glob, torch.tensor(1.3 * glob)]
    if mode in PER_TENSOR:
        per = norms * (0.5 + torch.rand(len(tensors), generator=g, dtype=torch.float64))  # x0.5 .. x1.5
        out = [float(norms.median()), per.float(), per.tolist()]
    return out


# ----------------------------------------------------------------------------------------------
# each mode against its float64 reference, on both paths
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mode_matches_float64(backend, mode, dtype):
    tensors = random_list(6, dtype, seed=40 + DTYPES.index(dtype))
    for target in targets_for(tensors, mode, seed=41):
        before = f64(tensors)
        norm = kernels.project_to_norm_(tensors, target, mode=mode, backend=backend)
        check_mode(tensors, before, norm, target, mode)
    if mode == "per_tensor":
        torch.testing.assert_close(kernels.tensor_norms(tensors, backend=backend).double(),
                                   reference(f64(tensors), 1.0, mode)[0], rtol=NORM_RTOL[dtype], atol=0)


@interpreted
@pytest.mark.parametrize("mode", MODES)
def test_modes_multi_tile_multi_chunk(mode, small_tiles):
    # 32-element tiles, <= 8 chunks per list: tensors split over several chunks, i.e. a per-tensor segment
    # of several chunks, and an empty tensor's 0-element chunk.
    tensors = random_list(5, torch.float32, seed=42) + [torch.empty(0)]
    tab = K.chunk_table(tensors, batched=False, per_tensor=mode in PER_TENSOR)
    assert tab.n_chunks > len(tensors)
    for target in targets_for(tensors, mode, seed=43):
        before = f64(tensors)
        norm = kernels.project_to_norm_(tensors, target, mode=mode, backend="triton")
        check_mode(tensors, before, norm, target, mode)


@pytest.mark.parametrize("mode", ["cap", "cap_per_tensor"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_never_increases_a_norm(backend, mode):
    # Element by element, in each tensor's own dtype: |after| <= |before|, so no norm can grow; and a norm
    # at or below its target is left bit for bit. After the cap, each norm is at most its target (to rounding).
    for seed, dtype in enumerate(DTYPES):
        tensors = random_list(5, dtype, seed=50 + seed)
        for target in targets_for(tensors, mode, seed=51) + [1e-3, 0.0]:
            before = [t.clone() for t in tensors]
            norm = kernels.project_to_norm_(tensors, target, mode=mode, backend=backend)
            if backend == "triton" and isinstance(target, float):
                # Triton's interpreter passes a Python float to the kernel as fp32 (compiled Triton honours the
                # kernel's fp64 annotation): that is the target an fp64 list is then capped at.
                target = float(torch.tensor(target, dtype=torch.float32))
            t64 = torch.as_tensor(target, dtype=torch.float64).expand_as(norm)
            for i, (a, b) in enumerate(zip(tensors, before)):
                assert bool((a.abs() <= b.abs()).all())
                if mode == "cap_per_tensor" and norm[i] <= t64[i] or mode == "cap" and norm <= t64:
                    assert torch.equal(a, b)
            after = torch.stack([a.double().norm() for a in tensors])
            after = after if mode == "cap_per_tensor" else after.norm()
            assert bool((after <= t64 * (1 + 4 * VALUE_RTOL[dtype]) + 1e-30).all())


# ----------------------------------------------------------------------------------------------
# edge cases: zero tensors, empty tensors, inf / NaN, mixed dtypes, an empty list
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_and_empty_tensors(backend, mode):
    zeros = [torch.zeros(7), torch.zeros(3, 5)]
    norm = kernels.project_to_norm_(zeros, 2.0, mode=mode, backend=backend)
    assert not norm.any() and not any(z.any() for z in zeros)  # norms 0, tensors still 0: no NaN
    # One zero tensor and one 0-element tensor among others: left as they are, with norm 0; the rest
    # as the reference says.
    tensors = random_list(3, torch.float32, seed=60) + [torch.zeros(4), torch.empty(0, 3)]
    before = f64(tensors)
    norm = kernels.project_to_norm_(tensors, 0.5, mode=mode, backend=backend)
    check_mode(tensors, before, norm, 0.5, mode)
    if mode in PER_TENSOR:
        assert norm.shape == (5,) and float(norm[3]) == 0.0 and float(norm[4]) == 0.0


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the interpreter's numpy, squaring 1e30
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_or_nan_norm(backend, mode):
    # A norm that is inf or NaN leaves what it measures unchanged (scale 1), and is returned as it is:
    # the whole list in the global modes (as today's projection); only that tensor in the per-tensor modes.
    for bad in (float("inf"), float("nan")):
        tensors = [torch.tensor([1.0, bad]), 3 * torch.randn(5, generator=torch.Generator().manual_seed(61))]
        before = [t.clone() for t in tensors]
        norm = kernels.project_to_norm_(tensors, 1.0, mode=mode, backend=backend)
        assert not torch.isfinite(norm.reshape(-1)[0])
        torch.testing.assert_close(tensors[0], before[0], rtol=0, atol=0, equal_nan=True)
        if mode in PER_TENSOR:
            assert float(norm[1]) == pytest.approx(float(before[1].norm()), rel=1e-6)
            assert float(tensors[1].norm()) == pytest.approx(1.0, rel=1e-5)
        else:
            assert torch.equal(tensors[1], before[1])
    big = [torch.full((4,), 1e30, dtype=torch.bfloat16), torch.ones(3, dtype=torch.bfloat16)]
    norm = kernels.project_to_norm_(big, 0.5, mode=mode, backend=backend)  # squares overflow fp32: inf
    assert float(norm.reshape(-1)[0]) == float("inf") and bool((big[0] == 1e30).all())


@pytest.mark.parametrize("mode", MODES)
def test_mixed_dtypes_on_the_torch_path(mode):
    tensors = [t for i, dt in enumerate(DTYPES) for t in random_list(2, dt, seed=70 + i)]
    for target in targets_for(tensors, mode, seed=71):
        if isinstance(target, torch.Tensor):
            target = target.double()
        before = f64(tensors)
        norm = kernels.project_to_norm_(tensors, target, mode=mode)  # auto on CPU: the torch path
        assert norm.dtype == torch.float64  # fp64 accumulation: the list holds fp64 tensors
        ref_norm, expected = reference(before, target, mode)
        torch.testing.assert_close(norm, ref_norm, rtol=1e-6, atol=0)
        for a, exp in zip(tensors, expected):
            torch.testing.assert_close(a.double(), exp, rtol=VALUE_RTOL[a.dtype], atol=1e-7)
    if K.INTERPRETED:
        with pytest.raises(ValueError, match="one dtype"):
            kernels.project_to_norm_(tensors, 1.0, mode=mode, backend="triton")


def _x():
    return torch.randn(3, 4)


P = kernels.project_to_norm_
BAD_MODE_ARGS = [
    ("unknown mode", lambda: (P, [_x()], 1.0, "clip"), ValueError, r"mode must be one of 'global', 'per_tensor'"),
    ("empty list", lambda: (P, [], 1.0, "per_tensor"), ValueError, r"tensors is empty"),
    ("empty list, cap", lambda: (P, [], 1.0, "cap"), ValueError, r"tensors is empty"),
    ("[N] target, global", lambda: (P, [_x(), _x()], torch.ones(2), "global"), ValueError,
     r"a number or a 0-d tensor; got a tensor of shape \(2,\)"),
    ("[N] target, cap", lambda: (P, [_x(), _x()], torch.ones(2), "cap"), ValueError, r"shape \(2,\)"),
    ("[N'] target", lambda: (P, [_x(), _x()], torch.ones(3), "per_tensor"), ValueError,
     r"a list of N numbers \(N = 2\); got a tensor of shape \(3,\)"),
    ("list of N' targets", lambda: (P, [_x(), _x()], [1.0], "cap_per_tensor"), ValueError, r"\(N = 2\); got a list of 1"),
    ("negative in target list", lambda: (P, [_x(), _x()], [1.0, -1.0], "per_tensor"), ValueError,
     r"target\[1\] must be finite and >= 0"),
    ("nan target", lambda: (P, [_x()], float("nan"), "cap"), ValueError, r"finite and >= 0, got nan"),
    ("int target tensor", lambda: (P, [_x()], torch.ones(1, dtype=torch.int64), "per_tensor"), TypeError,
     r"target has dtype torch.int64"),
    ("list target, global", lambda: (P, [_x()], [1.0], "global"), TypeError, r"got list"),
]


@pytest.mark.parametrize("backend", ["torch", "triton", "auto"])  # refused before dispatch
@pytest.mark.parametrize("case", BAD_MODE_ARGS, ids=[c[0] for c in BAD_MODE_ARGS])
def test_bad_mode_arguments_refused_on_both_paths(case, backend):
    _, make, exc, match = case
    fn, tensors, target, mode = make()
    before = [t.clone() for t in tensors]
    with pytest.raises(exc, match=match):
        fn(tensors, target, mode=mode, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(tensors, before))


# ----------------------------------------------------------------------------------------------
# the old API, unchanged; launches
# ----------------------------------------------------------------------------------------------
def _old_project_to_norm_torch_(tensors, target):
    # The torch path of project_to_norm_ before the modes existed, as it was, line for line.
    norm = torch.stack(torch._foreach_norm(tensors, 2, dtype=K._acc_dtype(tensors))).norm()
    scale = torch.where((norm > 0) & (norm < float("inf")), target / norm, 1.0)
    for dtype, group in K._by_dtype(tensors).items():
        torch._foreach_mul_(group, scale.to(dtype))
    return norm


@pytest.mark.parametrize("backend", BACKENDS)
def test_old_calls_bit_identical(backend):
    # project_to_norm_(ts, target) (no mode) is mode="global" bit for bit, on both paths, and on the torch
    # path bit for bit what it was before the modes existed.
    for dtype in DTYPES:
        a = random_list(9, dtype, seed=80)
        b, c = [t.clone() for t in a], [t.clone() for t in a]
        for target in (2.5, torch.tensor(0.75)):
            na = kernels.project_to_norm_(a, target, backend=backend)
            nb = kernels.project_to_norm_(b, target, mode="global", backend=backend)
            assert torch.equal(na, nb) and all(torch.equal(x, y) for x, y in zip(a, b))
            if backend == "torch":
                with torch.no_grad():
                    nc = _old_project_to_norm_torch_(c, target)
                assert torch.equal(na, nc) and all(torch.equal(x, y) for x, y in zip(a, c))


@interpreted
def test_two_launches_per_mode(monkeypatch):
    k1, k2 = CountLaunches(K._sumsq_kernel), CountLaunches(K._norm_rescale_kernel)
    monkeypatch.setattr(K, "_sumsq_kernel", k1)
    monkeypatch.setattr(K, "_norm_rescale_kernel", k2)
    tensors = random_list(7, torch.float32, seed=81) + [torch.empty(0)]
    per = torch.ones(len(tensors))
    kernels.project_to_norm_(tensors, 1.0, mode="per_tensor", backend="triton")  # builds its table
    kernels.project_to_norm_(tensors, 1.0, mode="cap", backend="triton")         # ... the global one
    builds, calls = K.table_builds, 0
    for mode in MODES:
        for target in (1.0, torch.tensor(1.0)) + ((per,) if mode in PER_TENSOR else ()):
            kernels.project_to_norm_(tensors, target, mode=mode, backend="triton")
            calls += 1
    assert (k1.launches, k2.launches) == (calls + 2, calls + 2) and K.table_builds == builds  # 2 per call, cached


# ----------------------------------------------------------------------------------------------
# FixedNorm
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_norm_in_a_training_loop(backend, mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    params = list(model.parameters())
    norms0 = torch.stack([p.detach().double().norm() for p in params])
    fixed = kernels.FixedNorm(model.parameters(), mode=mode, alpha=0.8, backend=backend)
    target = 0.8 * (norms0 if mode in PER_TENSOR else norms0.norm())
    torch.testing.assert_close(fixed.target.double(), target, rtol=1e-6, atol=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        before = f64(params)
        norm = fixed.step()
        check_mode([p.detach() for p in params], before, norm, target, mode)
    state = fixed.state_dict()
    other = kernels.FixedNorm(model.parameters(), mode=mode, alpha=3.0)
    other.load_state_dict(state)
    assert torch.equal(other.target, fixed.target)


def test_fixed_norm_arguments():
    lin = torch.nn.Linear(3, 2)
    fixed = kernels.FixedNorm(lin.parameters(), mode="per_tensor", target=[1.0, 0.5])  # N numbers -> [N] tensor
    assert isinstance(fixed.target, torch.Tensor) and fixed.target.tolist() == [1.0, 0.5]
    fixed.step()
    assert [round(float(p.detach().norm()), 5) for p in lin.parameters()] == [1.0, 0.5]
    assert kernels.FixedNorm(lin.parameters(), mode="cap", target=2.0).target == 2.0
    with pytest.raises(ValueError, match="tensors is empty"):
        kernels.FixedNorm([], mode="global")
    with pytest.raises(ValueError, match="mode must be one of"):
        kernels.FixedNorm(lin.parameters(), mode="clip")
    with pytest.raises(ValueError, match="not both"):
        kernels.FixedNorm(lin.parameters(), target=1.0, alpha=2.0)
    with pytest.raises(ValueError, match="alpha must be finite"):
        kernels.FixedNorm(lin.parameters(), alpha=-1.0)
    with pytest.raises(ValueError, match=r"\(N = 2\); got a tensor of shape \(3,\)"):
        kernels.FixedNorm(lin.parameters(), mode="per_tensor", target=torch.ones(3))
    with pytest.raises(ValueError, match="the initial norm of the list is 0, inf or NaN"):
        kernels.FixedNorm([torch.tensor([1.0, float("nan")])])
    with pytest.raises(ValueError, match=r"the initial norm of tensors \[1, 3\] is 0, inf or NaN"):
        kernels.FixedNorm([torch.ones(2), torch.zeros(3), torch.ones(1), torch.tensor([float("inf")])], mode="cap_per_tensor")
    kernels.FixedNorm([torch.ones(2), torch.zeros(3)], mode="per_tensor", target=torch.tensor([1.0, 0.0]))  # explicit: fine
    with pytest.raises(ValueError, match="state is for mode 'cap'"):
        fixed.load_state_dict({"mode": "cap", "target": 1.0})


# A model none of the project's scripts uses (a small CNN with BatchNorm), trained with AdamW and FixedNorm
# from a folder holding only a copy of kernels/: norms on their targets after 20 steps, caps never above.
DROP_IN = '''
import torch
import kernels
from kernels import FixedNorm

print("kernels from", kernels.__file__)

torch.manual_seed(0)
for mode in ["global", "per_tensor", "cap", "cap_per_tensor"]:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 2 * 2, 10))
    # Per tensor: the weights (BatchNorm's bias starts at 0, a norm no target can be a multiple of).
    params = list(model.parameters()) if mode in ("global", "cap") else [p for p in model.parameters() if p.dim() > 1]
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    fixed = FixedNorm(params, mode=mode, alpha=0.5 if mode in ("global", "per_tensor") else 1.0)
    for step in range(20):
        x, y = torch.randn(16, 3, 8, 8), torch.randint(10, (16,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        fixed.step()
    norms = torch.stack([p.detach().double().norm() for p in params])
    norms = norms if mode.endswith("per_tensor") else norms.norm()
    rel = (norms - fixed.target.double()) / fixed.target.double()
    if mode.startswith("cap"):
        assert bool((rel <= 1e-5).all()), (mode, rel)
        print(mode, "max rel", float(rel.max()))
    else:
        assert bool((rel.abs() <= 1e-5).all()), (mode, rel)
        print(mode, "max |rel|", float(rel.abs().max()))
print("ok")
'''


def test_drop_in_from_a_copied_folder(tmp_path):
    shutil.copytree(REPO / "kernels", tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "train_cnn.py").write_text(textwrap.dedent(DROP_IN))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "train_cnn.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr[-3000:]
    assert f"kernels from {tmp_path / 'kernels' / '__init__.py'}" in r.stdout  # the copy, not the repository's


# ----------------------------------------------------------------------------------------------
# GPU only: the real kernels for every mode, no host sync, two kernels, CUDA graphs
# ----------------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_cuda_modes_match_float64(mode, dtype):
    tensors = random_list(30, dtype, seed=90, device="cuda") + [torch.randn(1_000_001, device="cuda").to(dtype)]
    for target in targets_for(tensors, mode, seed=91):
        if isinstance(target, torch.Tensor):
            target = target.cuda()
        before = f64(tensors)
        norm = kernels.project_to_norm_(tensors, target, mode=mode)  # auto -> Triton on CUDA
        check_mode(tensors, before, norm.cpu(), target.cpu() if isinstance(target, torch.Tensor) else target, mode)


@needs_gpu
def test_cuda_modes_two_kernels_no_sync_and_graphs():
    from torch.profiler import ProfilerActivity, profile
    params = random_list(20, torch.float32, seed=92, device="cuda")
    per = torch.stack([p.norm() for p in params]) * 0.5
    fixed = {m: kernels.FixedNorm(params, mode=m, target=per if m in PER_TENSOR else torch.tensor(1.0, device="cuda"))
             for m in MODES}
    for f in fixed.values():
        f.step()  # tables built before capture
    torch.cuda.synchronize()
    for mode, f in fixed.items():
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            f.step()
            torch.cuda.synchronize()
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        assert len(names) == 2 and "_sumsq_kernel" in names[0] and "_norm_rescale_kernel" in names[1], (mode, names)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for f in fixed.values():
            f.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fixed["per_tensor"].step()
    for p in params:
        p.mul_(3.0)
    per.mul_(2.0)  # new targets, read from device memory at replay
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(torch.stack([p.norm() for p in params]), per, rtol=1e-5, atol=0)


# ----------------------------------------------------------------------------------------------
# the batched (ensemble) form in every mode: member e of tensor i, leading dim E
# ----------------------------------------------------------------------------------------------
PB = kernels.project_to_norm_batched_


def reference_batched(before64, target, mode):
    """(norms before, expected tensors) in float64 for project_to_norm_batched_: each member e on its own, the
    mode's definition written out (norms [E, N] per tensor, [E] otherwise)."""
    E = before64[0].shape[0]
    norms = torch.stack([b.reshape(E, -1).pow(2).sum(1).sqrt() for b in before64], dim=1)  # [E, N]
    norm = norms if mode in PER_TENSOR else norms.pow(2).sum(1).sqrt()
    t = torch.as_tensor(target, dtype=torch.float64).cpu().expand_as(norm)
    rescale = (norm > t if mode.startswith("cap") else norm > 0) & torch.isfinite(norm)
    scale = torch.where(rescale, t / norm, torch.ones_like(norm))
    col = [scale[:, i] if mode in PER_TENSOR else scale for i in range(len(before64))]
    return norm, [b * c.view(-1, *[1] * (b.dim() - 1)) for b, c in zip(before64, col)]


def check_batched(tensors, before64, got, target, mode):
    ref_norm, expected = reference_batched(before64, target, mode)
    dtype = tensors[0].dtype
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and got.shape == ref_norm.shape
    torch.testing.assert_close(got.double().cpu(), ref_norm, rtol=NORM_RTOL[dtype], atol=0)
    rtol = VALUE_RTOL[dtype]
    for a, b, exp in zip(tensors, before64, expected):
        atol = 1e-7 + rtol * 1e-4 * float(exp.abs().max()) if exp.numel() else 0
        torch.testing.assert_close(a.double().cpu(), exp, rtol=rtol, atol=atol)
        if mode.startswith("cap"):  # a cap never increases any element's magnitude
            assert bool((a.double().cpu().abs() <= b.abs()).all())


def batched_targets_for(tensors, mode, seed):
    """Targets that put some members' norms above and some below their target: a number and a 0-d tensor, and
    an [E] tensor and E numbers (global modes) or an [E, N] tensor (per-tensor modes)."""
    g = torch.Generator().manual_seed(seed)
    E = tensors[0].shape[0]
    norms = torch.stack([t.double().reshape(E, -1).norm(dim=1) for t in tensors], dim=1).cpu()  # [E, N]
    glob = norms.norm(dim=1)
    if mode in PER_TENSOR:
        return [float(norms.median()), torch.tensor(float(norms.mean())),
                (norms * (0.5 + torch.rand(norms.shape, generator=g, dtype=torch.float64))).float()]
    per = glob * (0.5 + torch.rand(E, generator=g, dtype=torch.float64))  # x0.5 .. x1.5 per member
    return [0.8 * float(glob.mean()), torch.tensor(float(glob.mean())), per.float(), per.tolist()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_modes_match_float64(backend, mode):
    for k, dtype in enumerate(DTYPES):
        tensors = random_list(3, dtype, seed=100 + k, E=3)
        targets = batched_targets_for(tensors, mode, seed=101)
        for target in targets if dtype == torch.float32 else targets[-1:]:  # every target kind in fp32
            before = f64(tensors)
            norms = PB(tensors, target, mode=mode, backend=backend)
            check_batched(tensors, before, norms, target, mode)
        if dtype != torch.float32 and backend != "torch":
            continue
        torch.testing.assert_close(kernels.batched_tensor_norms(tensors, backend=backend).double(),
                                   reference_batched(f64(tensors), 1.0, "per_tensor")[0], rtol=NORM_RTOL[dtype], atol=0)


@interpreted
@pytest.mark.parametrize("mode", MODES)
def test_batched_modes_multi_tile_multi_chunk(mode, small_tiles):
    # 32-element tiles, <= 8 chunks: (member, tensor) segments of several chunks, and an empty tensor's
    # 0-element chunk in each member.
    tensors = random_list(3, torch.float32, seed=102, E=2) + [torch.empty(2, 0)]
    tab = K.chunk_table(tensors, batched=True, per_tensor=mode in PER_TENSOR)
    assert tab.n_chunks > 2 * len(tensors) and tab.n_segments == (8 if mode in PER_TENSOR else 2)
    target = batched_targets_for(tensors[:3], mode, seed=103)[-1]
    if mode in PER_TENSOR:
        target = torch.cat([target, torch.ones(2, 1)], dim=1)
    before = f64(tensors)
    check_batched(tensors, before, PB(tensors, target, mode=mode, backend="triton"), target, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_members_do_not_depend_on_the_ensemble(backend, mode):
    # Member e's norms and values, bit for bit, whatever ensemble it is in and at whatever position: the E = 1
    # call on that member alone (the torch path; on the interpreter too, with one tile per chunk at these sizes).
    dtype = torch.float32
    pool = random_list(4, dtype, seed=104, E=5)
    tgt = batched_targets_for(pool, mode, seed=105)[2]  # [E] or [E, N]: some members above, some below their targets
    for t in pool:
        t[3] = 0  # member 3 all zero
    pool[1][2].view(-1)[0] = float("inf")  # member 2's tensor 1 (and global norm) inf
    E_all = pool[0].shape[0]
    alone = []
    for e in range(E_all):
        member = [t[e:e + 1].clone() for t in pool]
        alone.append((PB(member, tgt[e:e + 1], mode=mode, backend=backend), member))
    for members in ([0, 1], [4, 2, 0], [3, 1, 4, 0, 2]):
        ens = [t[members].clone() for t in pool]
        norms = PB(ens, tgt[members], mode=mode, backend=backend)
        for pos, e in enumerate(members):
            ref_norms, ref = alone[e]
            torch.testing.assert_close(norms[pos:pos + 1], ref_norms, rtol=0, atol=0, equal_nan=True)
            for a, r in zip(ens, ref):
                torch.testing.assert_close(a[pos:pos + 1], r, rtol=0, atol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the interpreter's numpy, squaring 1e30
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_zero_inf_nan_norms(backend, mode):
    # As the non-batched modes, per member: a norm that is 0, inf or NaN leaves what it measures unchanged and is
    # returned as it is: member e of every tensor (global, cap), member e of that tensor only (per tensor).
    E = 3
    tensors = [3 * torch.randn(E, 5, generator=torch.Generator().manual_seed(106)), torch.ones(E, 2, 2),
               torch.empty(E, 0)]
    tensors[0][0] = 0
    tensors[1][0] = 0           # member 0: all zero
    tensors[0][1, 2] = float("nan")  # member 1: tensor 0 NaN
    tensors[1][2, 0, 1] = float("inf")  # member 2: tensor 1 inf
    before = [t.clone() for t in tensors]
    norms = PB(tensors, 0.5, mode=mode, backend=backend)
    for a, b in zip(tensors, before):
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)  # zero member: no NaN
    if mode in PER_TENSOR:
        assert norms.shape == (E, 3) and float(norms[0, 0]) == 0 and not bool(norms[:, 2].any())
        assert norms[1, 0].isnan() and norms[2, 1].isinf()
        torch.testing.assert_close(tensors[0][1], before[0][1], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(tensors[1][2], before[1][2], rtol=0, atol=0)
        for e, i in ((1, 1), (2, 0)):  # the member's other tensor: rescaled (or capped) on its own
            assert float(tensors[i][e].double().norm()) == pytest.approx(0.5, rel=1e-5)
    else:
        assert norms.shape == (E,) and float(norms[0]) == 0 and norms[1].isnan() and norms[2].isinf()
        for a, b in zip(tensors, before):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # every member unchanged
    big = [torch.full((2, 4), 1e30, dtype=torch.bfloat16), torch.ones(2, 3, dtype=torch.bfloat16)]
    norms = PB(big, 0.5, mode=mode, backend=backend)  # squares overflow fp32: inf, left as they are
    assert bool(norms.reshape(2, -1)[:, 0].isinf().all()) and bool((big[0] == 1e30).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_global_bit_identical_to_before_the_modes(backend):
    # project_to_norm_batched_(ts, targets) (no mode) is mode="global" bit for bit, on both paths, and on the
    # torch path bit for bit the code before the batched modes existed.
    def old(tensors, targets):  # project_to_norm_batched_'s torch path before the modes, line for line
        acc = K._acc_dtype(tensors)
        per_tensor = [torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1, dtype=acc) for t in tensors]
        norms = torch.linalg.vector_norm(torch.stack(per_tensor, dim=1), dim=1)
        if not isinstance(targets, (int, float, torch.Tensor)):
            targets = torch.as_tensor(targets, dtype=norms.dtype, device=norms.device)
        scale = torch.where((norms > 0) & (norms < float("inf")), targets / norms, 1.0)
        for dtype, group in K._by_dtype(tensors).items():
            s = scale.to(dtype)
            torch._foreach_mul_(group, [s.view(-1, *([1] * (t.dim() - 1))) for t in group])
        return norms

    for k, dtype in enumerate(DTYPES if backend == "torch" else DTYPES[:1]):  # the interpreter: ~3 ms a program
        a = random_list(4, dtype, seed=107 + k, E=3)
        a[0][1] = 0
        b, c = [t.clone() for t in a], [t.clone() for t in a]
        for target in (2.5, torch.tensor(0.75), torch.tensor([0.5, 1.0, 2.0]), [1.0, 0.0, 3.0]):
            na, nb = PB(a, target, backend=backend), PB(b, target, mode="global", backend=backend)
            assert torch.equal(na, nb) and all(torch.equal(x, y) for x, y in zip(a, b))
            if backend == "torch":
                with torch.no_grad():
                    nc = old(c, target)
                assert torch.equal(na, nc) and all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("mode", MODES)
def test_batched_mixed_dtypes_on_the_torch_path(mode):
    tensors = [t for i, dt in enumerate(DTYPES) for t in random_list(1, dt, seed=108 + i, E=2)]
    target = batched_targets_for(tensors, mode, seed=109)[-1]
    target = target.double() if isinstance(target, torch.Tensor) else target
    before = f64(tensors)
    norms = PB(tensors, target, mode=mode)  # auto on CPU: the torch path
    ref_norm, expected = reference_batched(before, target, mode)
    assert norms.dtype == torch.float64
    torch.testing.assert_close(norms, ref_norm, rtol=1e-6, atol=0)
    for a, exp in zip(tensors, expected):
        torch.testing.assert_close(a.double(), exp, rtol=VALUE_RTOL[a.dtype], atol=1e-7)


def _e():
    return torch.randn(3, 4)  # as a batched tensor: E = 3


BAD_BATCHED_ARGS = [
    ("unknown mode", lambda: ([_e()], 1.0, "clip"), ValueError, r"mode must be one of"),
    ("empty list", lambda: ([], 1.0, "per_tensor"), ValueError, r"tensors is empty"),
    ("empty list, cap", lambda: ([], 1.0, "cap"), ValueError, r"tensors is empty"),
    ("[E] target, per tensor", lambda: ([_e(), _e()], torch.ones(3), "per_tensor"), ValueError,
     r"a number or a 0-d or \[E, N\] tensor \(E = 3, N = 2\); got a tensor of shape \(3,\)"),
    ("[N, E] target", lambda: ([_e(), _e()], torch.ones(2, 3), "cap_per_tensor"), ValueError, r"shape \(2, 3\)"),
    ("[E, N] target, cap", lambda: ([_e(), _e()], torch.ones(3, 2), "cap"), ValueError,
     r"\(E = 3\); got a tensor of shape \(3, 2\)"),
    ("list target, per tensor", lambda: ([_e()], [[1.0]] * 3, "per_tensor"), TypeError, r"\[E, N\] tensor .*got list"),
    ("list of E', cap", lambda: ([_e()], [1.0], "cap"), ValueError, r"\(E = 3\); got a list of 1"),
    ("negative target", lambda: ([_e()], -1.0, "cap_per_tensor"), ValueError, r"finite and >= 0, got -1"),
    ("int target tensor", lambda: ([_e()], torch.ones(3, 1, dtype=torch.int64), "per_tensor"), TypeError,
     r"target has dtype torch.int64"),
    ("0-d tensor in list", lambda: ([_e(), torch.tensor(1.0)], 1.0, "per_tensor"), ValueError, r"E >= 1"),
]


@pytest.mark.parametrize("backend", ["torch", "triton", "auto"])  # refused before dispatch
@pytest.mark.parametrize("case", BAD_BATCHED_ARGS, ids=[c[0] for c in BAD_BATCHED_ARGS])
def test_bad_batched_mode_arguments_refused_on_both_paths(case, backend):
    _, make, exc, match = case
    tensors, target, mode = make()
    before = [t.clone() for t in tensors]
    with pytest.raises(exc, match=match):
        PB(tensors, target, mode=mode, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(tensors, before))
    if not tensors:
        with pytest.raises(ValueError, match="tensors is empty"):
            kernels.batched_tensor_norms(tensors, backend=backend)


@interpreted
def test_batched_two_launches_per_mode(monkeypatch):
    k1, k2 = CountLaunches(K._sumsq_kernel), CountLaunches(K._norm_rescale_kernel)
    monkeypatch.setattr(K, "_sumsq_kernel", k1)
    monkeypatch.setattr(K, "_norm_rescale_kernel", k2)
    tensors = random_list(2, torch.float32, seed=110, E=2) + [torch.empty(2, 0)]
    kernels.batched_tensor_norms(tensors, backend="triton")  # builds the per-(member, tensor) table
    PB(tensors, 1.0, mode="cap", backend="triton")            # ... and the per-member one
    builds, calls = K.table_builds, 0
    for mode in MODES:
        extra = (torch.ones(2, 3),) if mode in PER_TENSOR else (torch.ones(2), [1.0, 2.0])
        for target in (1.0, torch.tensor(1.0)) + extra:
            PB(tensors, target, mode=mode, backend="triton")
            calls += 1
    kernels.batched_tensor_norms(tensors, backend="triton")
    assert (k1.launches, k2.launches) == (calls + 3, calls + 3) and K.table_builds == builds  # 2 per call, cached


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_cuda_batched_modes_match_float64(mode, dtype):
    tensors = random_list(12, dtype, seed=111, E=5, device="cuda")
    for target in batched_targets_for(tensors, mode, seed=112):
        if isinstance(target, torch.Tensor):
            target = target.cuda()
        before = f64(tensors)
        norms = PB(tensors, target, mode=mode)  # auto -> Triton on CUDA
        check_batched(tensors, before, norms, target.cpu() if isinstance(target, torch.Tensor) else target, mode)


@needs_gpu
def test_cuda_batched_modes_two_kernels_no_sync_and_graphs():
    from torch.profiler import ProfilerActivity, profile
    ens = random_list(10, torch.float32, seed=113, E=4, device="cuda")
    per = kernels.batched_tensor_norms(ens) * 0.5
    glob = kernels.batched_norm(ens) * 0.5
    for mode in MODES:
        PB(ens, per if mode in PER_TENSOR else glob, mode=mode)  # tables built before capture
    torch.cuda.synchronize()
    for mode in MODES:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            PB(ens, per if mode in PER_TENSOR else glob, mode=mode)
            torch.cuda.synchronize()
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        assert len(names) == 2 and "_sumsq_kernel" in names[0] and "_norm_rescale_kernel" in names[1], (mode, names)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for backend in ("triton", "torch"):
            for mode in MODES:
                PB(ens, per if mode in PER_TENSOR else glob, mode=mode, backend=backend)
                PB(ens, 1.0, mode=mode, backend=backend)
            kernels.batched_tensor_norms(ens, backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        PB(ens, per, mode="per_tensor")
    for t in ens:
        t.mul_(3.0)
    per.mul_(2.0)  # new targets, read from device memory at replay
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(kernels.batched_tensor_norms(ens, backend="torch"), per, rtol=1e-5, atol=0)
