"""Public API for the global weight norm and the fixed-norm projection.

    global_norm(tensors)                       -> 0-d tensor, ||theta||_2 over all tensors
    batched_norm(tensors)                      -> [E] norms, tensors with a leading ensemble dim E
    project_to_norm_(tensors, target)          -> rescales in place to norm `target`, returns old norm
    project_to_norm_(tensors, target, mode=m)  -> m = "global" (the default, as above), "per_tensor" (each
                                                  tensor to its own target: a number, a 0-d or [N] tensor,
                                                  or a list of N numbers; returns the [N] old norms),
                                                  "cap" / "cap_per_tensor" (the same, but only a norm above
                                                  its target is rescaled: a cap never increases a norm)
    FixedNorm(params, mode=m, target=None, alpha=1.0).step()  -> after optimizer.step(): back to the
                                                  targets (default: alpha * the norms at construction)
    project_to_norm_batched_(tensors, targets) -> same per model e (targets: number, 0-d or [E] tensor,
                                                  or a list of E numbers)
    project_to_norm_batched_(tensors, targets, mode=m) -> the same four modes per model e: "per_tensor" /
                                                  "cap_per_tensor" take targets[e, i] for model e of tensor i
                                                  (a number, a 0-d or [E, N] tensor; returns [E, N] old norms)
    tensor_norms(tensors)                      -> [N] norms, one per tensor (e.g. per-tensor targets alpha *
                                                  the initial norms); batched_tensor_norms(tensors) -> [E, N]
                                                  norms of model e of tensor i

`backend="auto"` uses the fused Triton kernels for CUDA tensors (two launches, CUDA-graph capturable)
and torch foreach ops on CPU or for lists the kernels can't take (mixed dtypes, non-contiguous);
"torch" or "triton" forces one (on CPU, "triton" needs TRITON_INTERPRET=1 set before triton's first
import). Nothing here synchronises with the host (except a batched target given as a list of numbers: it is
copied to the device on every call, a blocking copy on CUDA; pass an [E] tensor in a training loop): norms
stay on the device, in the accumulation dtype (float64 if any tensor is float64, else float32).
Algorithm and measured numbers: kernels/README.md.

Arguments (checked by _check on every call, the same way and with the same message whatever the backend):
tensors is a list (any iterable) of at least one tensor, not a bare tensor; all float32/float64/bfloat16/
float16 (mixed dtypes are fine on the torch path) and on one device; batched: each with the same leading
dim E >= 1. A number target must be finite and >= 0 (0 is allowed: it zeroes the tensors, and since a zero
norm is then left as it is, later projections can't bring them back). A tensor target must be 0-d (or [E],
batched), floating-point and on the tensors' device; its value is never read on the host (no sync), so
it is not checked. Per-tensor modes take one target per tensor as well ([N] tensor or N numbers; batched:
an [E, N] tensor, one per model and tensor). An
unknown mode, like wrong values / shapes / devices, raises ValueError; wrong types raise TypeError.
"""
import math
import numbers

import torch

from . import norm_project as _impl

__all__ = ["global_norm", "batched_norm", "tensor_norms", "batched_tensor_norms", "project_to_norm_", "project_to_norm_batched_",
           "FixedNorm", "MODES"]

# project_to_norm_'s modes: rescale the global norm to the target, each tensor's norm to its own target, or
# either of them only where it exceeds its target (a cap).
MODES = ("global", "per_tensor", "cap", "cap_per_tensor")
_PER_TENSOR = frozenset({"per_tensor", "cap_per_tensor"})
_CAP = frozenset({"cap", "cap_per_tensor"})

_DTYPES = frozenset(_impl.DTYPES)
_DTYPE_NAMES = "float32, float64, bfloat16, float16"
_NO_TARGET = object()  # _check's target for the norm functions (not None: project_to_norm_(ts, None) is refused)


def _number(x, name, want):
    # A target given as a Python number (or numpy scalar), as a float; bool is an int but never a norm.
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        raise TypeError(f"{name} must be {want}, got {type(x).__name__}")
    if not (math.isfinite(x) and x >= 0):  # a negative target flips every sign, NaN / inf poison every weight
        raise ValueError(f"{name} must be finite and >= 0, got {x}")
    return float(x)


def _check(tensors, backend, batched, target=_NO_TARGET, mode="global"):
    """(list of tensors, target) as both paths take them, or a TypeError / ValueError with the same
    message whichever backend was asked for. Reads Python numbers and tensor metadata only, never a
    device tensor's values: that would be a host sync, every training step."""
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if isinstance(tensors, torch.Tensor):  # iterating it would quietly take its rows as the list
        raise TypeError("tensors must be a list of tensors, got a single tensor: pass [tensor]")
    try:
        tensors = list(tensors)
    except TypeError:
        raise TypeError(f"tensors must be a list of tensors, got {type(tensors).__name__}") from None
    if not tensors:
        raise ValueError("tensors is empty: need at least one tensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}] is a {type(t).__name__}, not a torch.Tensor")
        if t.dtype not in _DTYPES:
            raise TypeError(f"tensors[{i}] has dtype {t.dtype}; supported: {_DTYPE_NAMES}")
        if batched:
            shape = t.shape  # read once: each .shape builds a new torch.Size
            if not shape or not shape[0]:
                raise ValueError(f"batched tensors need a leading ensemble dim E >= 1; tensors[{i}] has shape "
                                 f"{tuple(shape)}")
        if i == 0:
            device, E = t.device, shape[0] if batched else None
        elif t.device != device:
            raise ValueError(f"all tensors must be on one device: tensors[0] is on {device}, "
                             f"tensors[{i}] on {t.device}")
        elif batched and shape[0] != E:
            raise ValueError(f"batched tensors must share the leading ensemble dim E: tensors[0] has E = {E}, "
                             f"tensors[{i}] has shape {tuple(shape)}")
    if target is _NO_TARGET:
        return tensors, None

    # One target per model (batched) or per tensor (per-tensor modes) may be given: n of them; batched per
    # tensor, one per model and tensor: an [E, N] tensor (no lists of lists).
    if batched and mode in _PER_TENSOR:
        n, shape = None, (E, len(tensors))
        want = f"a number or a 0-d or [E, N] tensor (E = {E}, N = {len(tensors)})"
    else:
        n, name = (E, "E") if batched else (len(tensors), "N") if mode in _PER_TENSOR else (None, None)
        shape = (n,) if n else None
        want = (f"a number, a 0-d or [{name}] tensor, or a list of {name} numbers ({name} = {n})" if n
                else "a number or a 0-d tensor")
    if isinstance(target, torch.Tensor):  # metadata only: its value stays on the device, unchecked
        if not (target.dim() == 0 or (shape and target.shape == shape)):
            raise ValueError(f"target must be {want}; got a tensor of shape {tuple(target.shape)}")
        if target.dtype not in _DTYPES:
            raise TypeError(f"target has dtype {target.dtype}; supported: {_DTYPE_NAMES}")
        if target.device != device:  # a CPU target would be copied to the device every call
            raise ValueError(f"target is on {target.device}, the tensors on {device}")
        return tensors, target
    if n and isinstance(target, (list, tuple)):
        if len(target) != n:
            raise ValueError(f"target must be {want}; got a list of {len(target)}")
        return tensors, [_number(x, f"target[{i}]", "a number") for i, x in enumerate(target)]
    return tensors, _number(target, "target", want)


def _triton_table(tensors, backend, batched, per_tensor=False):
    # The Triton chunk table to use, or None for the torch path.
    if backend == "torch" or (backend == "auto" and not (tensors[0].is_cuda and _impl.HAVE_TRITON)):
        return None
    # auto: None if the kernels can't take the list
    return _impl.chunk_table(tensors, batched, strict=backend == "triton", per_tensor=per_tensor)


def global_norm(tensors, *, backend="auto"):
    tensors, _ = _check(tensors, backend, batched=False)
    tab = _triton_table(tensors, backend, batched=False)
    return _impl.global_norm_torch(tensors) if tab is None else _impl.launch(tab).reshape(())


def batched_norm(tensors, *, backend="auto"):
    tensors, _ = _check(tensors, backend, batched=True)
    tab = _triton_table(tensors, backend, batched=True)
    return _impl.batched_norm_torch(tensors) if tab is None else _impl.launch(tab)


def tensor_norms(tensors, *, backend="auto"):
    tensors, _ = _check(tensors, backend, batched=False)
    tab = _triton_table(tensors, backend, batched=False, per_tensor=True)
    return _impl.tensor_norms_torch(tensors) if tab is None else _impl.launch(tab)


def batched_tensor_norms(tensors, *, backend="auto"):
    tensors, _ = _check(tensors, backend, batched=True)
    tab = _triton_table(tensors, backend, batched=True, per_tensor=True)
    return _impl.batched_tensor_norms_torch(tensors) if tab is None else _impl.launch(tab).view(-1, len(tensors))


def project_to_norm_(tensors, target, *, mode="global", backend="auto"):
    tensors, target = _check(tensors, backend, batched=False, target=target, mode=mode)
    per_tensor = mode in _PER_TENSOR
    tab = _triton_table(tensors, backend, batched=False, per_tensor=per_tensor)
    if tab is not None:  # raw pointers: autograd never sees the Triton path
        norms = _impl.launch(tab, target, cap=mode in _CAP)
        return norms if per_tensor else norms.reshape(())
    with torch.no_grad():  # in-place ops on leaf parameters
        return _impl.project_to_norm_torch_(tensors, target, mode)


def project_to_norm_batched_(tensors, targets, *, mode="global", backend="auto"):
    tensors, targets = _check(tensors, backend, batched=True, target=targets, mode=mode)
    per_tensor = mode in _PER_TENSOR
    tab = _triton_table(tensors, backend, batched=True, per_tensor=per_tensor)
    if tab is not None:  # segments: model e ([E] norms), or (model e, tensor i) = e * N + i ([E, N])
        norms = _impl.launch(tab, targets, cap=mode in _CAP)
        return norms.view(-1, len(tensors)) if per_tensor else norms
    with torch.no_grad():
        return _impl.project_to_norm_batched_torch_(tensors, targets, mode)


from .fixed_norm import FixedNorm  # noqa: E402  (it uses the functions above)
