"""FixedNorm: fixed-norm training for any PyTorch model, one call after each optimizer step.

    fixed = FixedNorm(model.parameters(), mode="global", alpha=1.0)  # targets: alpha * the norms now
    for x, y in data:
        ...
        optimizer.step()
        fixed.step()  # one fused projection (two launches on CUDA, no host sync)

Modes (kernels.project_to_norm_): "global" keeps ||theta||_2 on its target, "per_tensor" each
tensor's norm on its own, "cap" / "cap_per_tensor" only pull back a norm that grew above its target.
"""
import torch

from . import _PER_TENSOR, _check, _number, global_norm, project_to_norm_, tensor_norms
from . import norm_project as _impl


class FixedNorm:
    """Holds `params` at fixed norms. target: None (default: alpha times the norms at construction, the
    global one or one per tensor, kept as a device tensor) or any target project_to_norm_ takes for the
    mode. The targets are in `.target` and in state_dict() (save it with the checkpoint: a resumed run
    must not re-measure them)."""

    def __init__(self, params, mode="global", target=None, alpha=1.0, backend="auto"):
        params, _ = _check(params, backend, batched=False, mode=mode)  # the same errors as project_to_norm_
        if target is None:
            alpha = _number(alpha, "alpha", "a number")
            with torch.no_grad():
                norms = (tensor_norms if mode in _PER_TENSOR else global_norm)(params, backend=backend)
            # A host sync, here only. A target of 0 would hold its tensors at zero for good (e.g. a zero-initialised
            # bias, per tensor), an inf or NaN one would poison them: refused, rather than done silently.
            bad = ~(torch.isfinite(norms) & (norms > 0))
            if bool(bad.any()):
                which = f"tensors {bad.nonzero().flatten().tolist()}" if norms.dim() else "the list"
                raise ValueError(f"the initial norm of {which} is 0, inf or NaN: no multiple of it can be a target; "
                                 "leave such tensors out (e.g. [p for p in model.parameters() if p.dim() > 1]) "
                                 "or give target explicitly")
            target = alpha * norms
        elif alpha != 1.0:
            raise ValueError("give target or alpha (a multiple of the initial norms), not both")
        self.params, self.target = _check(params, backend, batched=False, target=target, mode=mode)
        if isinstance(self.target, list):  # N numbers (checked): copied to the device once here, not every step
            self.target = torch.tensor(self.target, dtype=_impl._acc_dtype(params), device=params[0].device)
        self.mode, self.backend = mode, backend

    def step(self):
        """Projects the parameters back onto their targets; returns the norm(s) before (0-d or [N])."""
        return project_to_norm_(self.params, self.target, mode=self.mode, backend=self.backend)

    def state_dict(self):
        return {"mode": self.mode, "target": self.target}

    def load_state_dict(self, state):
        if state["mode"] != self.mode:
            raise ValueError(f"state is for mode {state['mode']!r}, this FixedNorm has mode {self.mode!r}")
        target = state["target"]
        if isinstance(target, torch.Tensor):
            target = target.to(self.params[0].device)
        _, self.target = _check(self.params, self.backend, batched=False, target=target, mode=self.mode)
