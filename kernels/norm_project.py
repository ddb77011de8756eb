"""Global L2 norm and projection onto a norm sphere, for a list of tensors.

Fixed-weight-norm training (the paper's reduced landscapes, Sec. 2; de-grokking, Fig. 7b) rescales
every parameter after each optimizer step so that the global L2 norm ||theta||_2 equals a target w.

This file holds the pure-torch reference (foreach ops: a handful of launches, no host sync).
The fused Triton kernels live below it (see kernels/README.md).
"""
import torch


def _acc_dtype(t):
    # Accumulate in fp32, or fp64 for fp64 tensors (bf16/fp16 sums of squares overflow or lose digits).
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# torch reference
# ----------------------------------------------------------------------------------------------
def global_norm_torch(tensors):
    """sqrt(sum over all tensors of sum(t**2)) as a 0-d device tensor (no host sync)."""
    acc = _acc_dtype(tensors[0])
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=acc)).norm()


def project_to_norm_torch_(tensors, target):
    """Rescale all tensors in place so their global norm equals target; returns the norm before."""
    norm = global_norm_torch(tensors)
    target = torch.as_tensor(target, dtype=norm.dtype, device=norm.device)
    # Zero norm: nothing to rescale towards any direction, so leave the tensors as they are.
    scale = torch.where(norm > 0, target / norm, torch.ones_like(norm))
    torch._foreach_mul_(tensors, scale.to(tensors[0].dtype))
    return norm


def batched_norm_torch(tensors):
    """Per-model norms [E] of tensors that share a leading ensemble dimension E."""
    acc = _acc_dtype(tensors[0])
    sq = [t.reshape(t.shape[0], -1).to(acc).pow(2).sum(1) for t in tensors]
    return torch.stack(sq).sum(0).sqrt()


def project_to_norm_batched_torch_(tensors, targets):
    """Rescale model e of every tensor so that model e's global norm equals targets[e]."""
    norms = batched_norm_torch(tensors)
    targets = torch.as_tensor(targets, dtype=norms.dtype, device=norms.device).expand_as(norms)
    scale = torch.where(norms > 0, targets / norms, torch.ones_like(norms)).to(tensors[0].dtype)
    torch._foreach_mul_(tensors, [scale.view(-1, *([1] * (t.dim() - 1))) for t in tensors])
    return norms
