"""Public API for the global weight norm and the fixed-norm projection.

    global_norm(tensors)                       -> 0-d tensor, ||theta||_2 over all tensors
    batched_norm(tensors)                      -> [E] norms, tensors with a leading ensemble dim E
    project_to_norm_(tensors, target)          -> rescales in place to norm `target`, returns old norm
    project_to_norm_batched_(tensors, targets) -> same per model e (targets: number, 0-d or [E] tensor)

`backend="auto"` uses the fused Triton kernels for CUDA tensors (two launches, CUDA-graph capturable)
and torch foreach ops on CPU or for lists the kernels can't take (mixed dtypes, non-contiguous);
"torch" or "triton" forces one (on CPU, "triton" needs TRITON_INTERPRET=1 set before triton's first
import). Nothing here synchronises with the host: norms stay on the device, in the accumulation
dtype (float32, or float64 for float64 tensors). Algorithm and measured numbers: kernels/README.md.
"""
import torch

from . import norm_project as _impl

__all__ = ["global_norm", "batched_norm", "project_to_norm_", "project_to_norm_batched_"]


def _triton_table(tensors, backend, batched):
    # The Triton chunk table to use, or None for the torch path.
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend == "torch" or (backend == "auto" and not (tensors[0].is_cuda and _impl.HAVE_TRITON)):
        return None
    return _impl.chunk_table(tensors, batched, strict=backend == "triton")  # auto: None if it can't


def _as_list(tensors):
    tensors = [t for t in tensors]
    if not tensors:
        raise ValueError("need at least one tensor")
    return tensors


def global_norm(tensors, *, backend="auto"):
    tensors = _as_list(tensors)
    tab = _triton_table(tensors, backend, batched=False)
    return _impl.global_norm_torch(tensors) if tab is None else _impl.launch(tab).reshape(())


def batched_norm(tensors, *, backend="auto"):
    tensors = _as_list(tensors)
    tab = _triton_table(tensors, backend, batched=True)
    return _impl.batched_norm_torch(tensors) if tab is None else _impl.launch(tab)


def project_to_norm_(tensors, target, *, backend="auto"):
    tensors = _as_list(tensors)
    tab = _triton_table(tensors, backend, batched=False)
    if tab is not None:
        return _impl.launch(tab, target).reshape(())  # raw pointers: autograd never sees the Triton path
    with torch.no_grad():  # in-place ops on leaf parameters
        return _impl.project_to_norm_torch_(tensors, target)


def project_to_norm_batched_(tensors, targets, *, backend="auto"):
    tensors = _as_list(tensors)
    tab = _triton_table(tensors, backend, batched=True)
    if tab is not None:
        return _impl.launch(tab, targets)
    with torch.no_grad():
        return _impl.project_to_norm_batched_torch_(tensors, targets)
