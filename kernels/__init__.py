"""Public API for the global weight norm and the fixed-norm projection.

    global_norm(tensors)                      -> 0-d tensor, ||theta||_2 over all tensors
    project_to_norm_(tensors, target)         -> rescales in place to norm `target`, returns old norm
    project_to_norm_batched_(tensors, targets)-> same per model, tensors with a leading ensemble dim E

`backend="auto"` uses the fused Triton kernels for CUDA tensors and torch foreach ops on CPU;
"torch" or "triton" forces one (on CPU, "triton" needs TRITON_INTERPRET=1 set before triton's
first import). Nothing here synchronises with the host: norms stay on the device.
"""
import torch

from .norm_project import (
    batched_norm_torch,
    global_norm_torch,
    project_to_norm_batched_torch_,
    project_to_norm_torch_,
)

__all__ = ["global_norm", "batched_norm", "project_to_norm_", "project_to_norm_batched_"]


def _use_triton(tensors, backend):
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend == "auto":
        return tensors[0].is_cuda and _triton_available()
    return backend == "triton"


def _triton_available():
    try:
        from . import norm_project_triton  # noqa: F401  (imports triton)
        return True
    except ImportError:
        return False


def _as_list(tensors):
    tensors = [t for t in tensors]
    if not tensors:
        raise ValueError("need at least one tensor")
    return tensors


def global_norm(tensors, *, backend="auto"):
    tensors = _as_list(tensors)
    if _use_triton(tensors, backend):
        from .norm_project_triton import global_norm_triton
        return global_norm_triton(tensors)
    return global_norm_torch(tensors)


def batched_norm(tensors, *, backend="auto"):
    tensors = _as_list(tensors)
    if _use_triton(tensors, backend):
        from .norm_project_triton import batched_norm_triton
        return batched_norm_triton(tensors)
    return batched_norm_torch(tensors)


@torch.no_grad()
def project_to_norm_(tensors, target, *, backend="auto"):
    tensors = _as_list(tensors)
    if _use_triton(tensors, backend):
        from .norm_project_triton import project_to_norm_triton_
        return project_to_norm_triton_(tensors, target)
    return project_to_norm_torch_(tensors, target)


@torch.no_grad()
def project_to_norm_batched_(tensors, targets, *, backend="auto"):
    tensors = _as_list(tensors)
    if _use_triton(tensors, backend):
        from .norm_project_triton import project_to_norm_batched_triton_
        return project_to_norm_batched_triton_(tensors, targets)
    return project_to_norm_batched_torch_(tensors, targets)
