"""Global L2 norm and projection onto a norm sphere, for a list of tensors.

Fixed-weight-norm training (the paper's reduced landscapes, Sec. 2; de-grokking, Fig. 7b) rescales
every parameter after each optimizer step so that the global L2 norm ||theta||_2 equals a target w.

The file follows the Triton tutorials' order:
  1. the pure-torch reference (foreach ops: a handful of launches, no host sync; CPU default);
  2. the two Triton kernels (one launch each);
  3. the launchers: the cached chunk table, argument checks, the two launches.
Algorithm, numbers and limits: kernels/README.md.

triton is optional: without it (macOS, CPU-only installs) this module still imports and the torch
path works; `HAVE_TRITON` says which. With TRITON_INTERPRET=1 set before triton's first import, the
same kernels run on CPU tensors through Triton's interpreter (that is how tests/test_kernels.py runs).
"""
from __future__ import annotations  # kernel annotations such as `tl.float64` stay strings without triton

from collections import OrderedDict

import torch

try:
    import triton
    import triton.language as tl
    HAVE_TRITON = True
except ImportError:
    triton = tl = None
    HAVE_TRITON = False


# The element types both paths take (kernels/__init__.py checks every call's tensors against it).
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _acc_dtype(tensors):
    # Accumulate in fp32, or fp64 if any tensor is fp64 (bf16/fp16 sums of squares overflow or lose digits).
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _by_dtype(tensors):
    # {dtype: its tensors}, one entry for the usual one-dtype list: a mixed list is rescaled one dtype at a
    # time, with the scale cast to each dtype (foreach ops take one dtype per call on their fast path).
    groups = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    return groups


# ----------------------------------------------------------------------------------------------
# torch reference
# ----------------------------------------------------------------------------------------------
def global_norm_torch(tensors):
    """sqrt(sum over all tensors of sum(t**2)) as a 0-d device tensor (no host sync)."""
    acc = _acc_dtype(tensors)
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=acc)).norm()


def tensor_norms_torch(tensors):
    """The [N] norms of the N tensors, one each, in the accumulation dtype of the whole list (no host sync)."""
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=_acc_dtype(tensors)))


def _mode_scale(norm, target, mode):
    """target / norm where the mode rescales: where the norm is finite and > 0 (as the global mode), and for a cap
    only where it exceeds the target (then target / norm < 1: a cap never increases a norm; a norm <= target is
    left bit for bit); 1 elsewhere."""
    if isinstance(target, list):
        target = torch.tensor(target, dtype=norm.dtype, device=norm.device)
    ok = (norm > target) if mode.startswith("cap") else (norm > 0)
    return torch.where(ok & (norm < float("inf")), target / norm, 1.0)


def project_to_norm_torch_(tensors, target, mode="global"):
    """Rescale the tensors in place (kernels/__init__.py, project_to_norm_): "global" so their global norm
    equals target, "cap" only if it is above the target, "per_tensor" / "cap_per_tensor" each tensor on its own
    (target: a number, a 0-d or [N] tensor, or a list of N numbers). A device target is used as is: no
    host->device copy, no sync. Returns the norm(s) before: 0-d, or [N]."""
    per_tensor = mode.endswith("per_tensor")
    norm = tensor_norms_torch(tensors) if per_tensor else global_norm_torch(tensors)
    scale = _mode_scale(norm, target, mode)
    for dtype, group in _by_dtype(tensors).items():
        s = scale.to(dtype)  # per tensor: tensor i's 0-d scale, for the tensors of this dtype
        torch._foreach_mul_(group, [c for c, t in zip(s.unbind(), tensors) if t.dtype == dtype] if per_tensor else s)
    return norm


def batched_tensor_norms_torch(tensors):
    """[E, N] norms of member e of tensor i, for N tensors that share a leading ensemble dimension E (each
    reduced along its contiguous trailing elements: member e's norms don't depend on E)."""
    acc = _acc_dtype(tensors)
    return torch.stack([torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1, dtype=acc) for t in tensors], dim=1)


def batched_norm_torch(tensors):
    """Per-model norms [E] of tensors that share a leading ensemble dimension E."""
    # [E, tensors] and a reduction along the contiguous last dim: a member's norm is then summed in the same
    # order whatever E is (a reduction over dim 0 vectorizes across members, and its order depends on E).
    return torch.linalg.vector_norm(batched_tensor_norms_torch(tensors), dim=1)


def project_to_norm_batched_torch_(tensors, targets, mode="global"):
    """project_to_norm_torch_ for tensors that share a leading ensemble dimension E (kernels/__init__.py,
    project_to_norm_batched_): "global" / "cap" member e's global norm to / capped at targets[e] (a number, a
    0-d or [E] tensor, or E numbers); "per_tensor" / "cap_per_tensor" member e of tensor i on its own, to /
    capped at targets[e, i] (a number, a 0-d or [E, N] tensor). Returns the norms before: [E], or [E, N]."""
    per_tensor = mode.endswith("per_tensor")
    norms = batched_tensor_norms_torch(tensors) if per_tensor else batched_norm_torch(tensors)
    scale = _mode_scale(norms, targets, mode)  # element by element: a member's scale is its own norm's and target's
    for dtype, group in _by_dtype(tensors).items():
        s = scale.to(dtype)
        # per tensor: column i of [E, N], tensor i's E scales; each as an [E, 1, ...] view (no copy)
        cols = [c for c, t in zip(s.unbind(1), tensors) if t.dtype == dtype] if per_tensor else (s,) * len(group)
        torch._foreach_mul_(group, [c.view(-1, *([1] * (t.dim() - 1))) for c, t in zip(cols, group)])
    return norms


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------
# The work is cut into CHUNKS: a chunk is a contiguous run of at most CHUNK elements inside one
# tensor (inside one model's slice of it, for the batched form), and belongs to one SEGMENT: the
# whole list for the global norm, model e for the batched norm. A device table lists every chunk's
# address, length and segment, so one launch covers every tensor of the list, whatever their sizes.
#   launch 1 (_sumsq_kernel):   program c writes partial[c] = sum of squares of chunk c;
#   launch 2 (_norm_rescale_kernel): program c sums its segment's partials in a fixed order, takes the
#                               square root, and multiplies chunk c in place by target / norm.
# The per-tensor modes are the same two launches with one segment per tensor (the table's `per_tensor`),
# batched: one per (model e, tensor i), segment e * N + i.
# No atomics anywhere: every program of a segment adds the same partials in the same order, so all
# of them (and every repeated call) get the same norm bit for bit.
def _jit(fn):
    # triton.jit when triton is installed; without it the kernels are plain (never launched) functions.
    return triton.jit(fn) if HAVE_TRITON else fn


@_jit
def _sumsq_kernel(
    addr_ptr,       # [C] int64: address of chunk c's first element (tensor.data_ptr() + offset*itemsize)
    numel_ptr,      # [C] int64: number of elements in chunk c
    partial_ptr,    # [C] ACC, out: sum of squares of chunk c
    DTYPE: tl.constexpr,    # element type of every tensor in the list
    ACC: tl.constexpr,      # accumulation type: fp32, or fp64 for fp64 tensors
    BLOCK: tl.constexpr,    # elements per tile; a chunk is walked tile by tile
    ALIGNED: tl.constexpr,  # every chunk address is 16-byte aligned: lets the compiler vectorise loads
):
    c = tl.program_id(0)
    x_ptr = tl.load(addr_ptr + c).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        x_ptr = tl.multiple_of(x_ptr, 16)
    n = tl.load(numel_ptr + c)
    n_full = n - n % BLOCK
    idx = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=ACC)
    # Whole tiles without a mask (a mask on a length loaded from memory would block vector loads),
    # then one masked tile for the ragged end.
    for start in range(0, n_full, BLOCK):
        x = tl.load(x_ptr + start + idx).to(ACC)
        acc += x * x
    x = tl.load(x_ptr + n_full + idx, mask=n_full + idx < n, other=0.0).to(ACC)
    acc += x * x
    tl.store(partial_ptr + c, tl.sum(acc, axis=0))


@_jit
def _norm_rescale_kernel(
    addr_ptr,       # [C] int64: chunk addresses, as in _sumsq_kernel
    numel_ptr,      # [C] int64: chunk lengths
    seg_ptr,        # [C] int64: segment of chunk c (model, tensor, or model x tensor); all 0 for the global norm
    seg_start_ptr,  # [S+1] int64: the chunks of segment s are seg_start[s] .. seg_start[s+1]-1
    partial_ptr,    # [C] ACC: sums of squares from _sumsq_kernel
    norm_ptr,       # [S] ACC, out: norm of segment s (before the rescale)
    target_ptr,     # target of segment s: target_ptr[s * target_stride] if TARGET_PTR ...
    target_stride,  # ... (0: one target shared by all segments, 1: one per segment)
    target_val: tl.float64,  # ... else this number (a Python float; fp64 so fp64 runs lose nothing)
    DTYPE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
    RBLOCK: tl.constexpr,      # partials summed per tile
    ALIGNED: tl.constexpr,
    TARGET_PTR: tl.constexpr,  # target given as a device tensor (read here, never on the host: no sync)
    CAP: tl.constexpr,         # rescale only a segment whose norm exceeds its target (modes "cap*")
    RESCALE: tl.constexpr,     # True: program c = chunk c, rescaled in place (project_to_norm_*);
                               # False: program s = segment s, only its norm is written (*_norm)
):
    if RESCALE:
        c = tl.program_id(0)
        s = tl.load(seg_ptr + c)
    else:
        s = tl.program_id(0)
    # The segment's partials, summed in a fixed order (tiles of RBLOCK, then the tree sum inside the
    # tile): every program of the segment gets the same norm, bit for bit.
    lo = tl.load(seg_start_ptr + s)
    hi = tl.load(seg_start_ptr + s + 1)
    r = tl.arange(0, RBLOCK)
    acc = tl.zeros([RBLOCK], dtype=ACC)
    for start in range(lo, hi, RBLOCK):
        acc += tl.load(partial_ptr + start + r, mask=start + r < hi, other=0.0)
    # Correctly rounded sqrt and division (fp32's tl.sqrt and `/` may be the fast approximate ones).
    if ACC == tl.float64:
        norm = tl.sqrt(tl.sum(acc, axis=0))
    else:
        norm = tl.sqrt_rn(tl.sum(acc, axis=0))

    if RESCALE:
        if c == lo:  # the segment's first chunk reports the norm
            tl.store(norm_ptr + s, norm)
        if TARGET_PTR:
            target = tl.load(target_ptr + s * target_stride).to(ACC)
        else:
            target = tl.cast(target_val, ACC)
        # Zero norm: no direction to rescale along; inf / NaN (overflow, a diverged run): nothing
        # sensible to scale by. Either way leave the tensors as they are (scale 1), as the torch path.
        ok = (norm > 0) & (norm < float("inf"))
        if CAP:  # and a cap leaves a norm <= target as it is (then target / norm < 1: never an increase)
            ok = ok & (norm > target)
        safe_norm = tl.where(ok, norm, 1.0)
        if ACC == tl.float64:
            scale = tl.where(ok, target / safe_norm, 1.0)
        else:
            scale = tl.where(ok, tl.div_rn(target, safe_norm), 1.0)

        x_ptr = tl.load(addr_ptr + c).to(tl.pointer_type(DTYPE))
        if ALIGNED:
            x_ptr = tl.multiple_of(x_ptr, 16)
        n = tl.load(numel_ptr + c)
        n_full = n - n % BLOCK
        idx = tl.arange(0, BLOCK)
        for start in range(0, n_full, BLOCK):
            x = tl.load(x_ptr + start + idx).to(ACC)
            tl.store(x_ptr + start + idx, (x * scale).to(DTYPE))  # one rounding, from ACC
        mask = n_full + idx < n
        x = tl.load(x_ptr + n_full + idx, mask=mask, other=0.0).to(ACC)
        tl.store(x_ptr + n_full + idx, (x * scale).to(DTYPE), mask=mask)
    else:
        tl.store(norm_ptr + s, norm)


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------
BLOCK = 4096        # elements per tile: 16 per thread at 8 warps, enough bytes in flight per SM
NUM_WARPS = 8
RBLOCK = 1024       # partials summed per tile in launch 2
MAX_CHUNKS = 4096   # chunks grow past BLOCK so that large lists make about this many (see README)
MAX_TABLES = 64     # parameter lists whose chunk tables stay cached (least recently used dropped)

# TRITON_INTERPRET=1 was set before triton's import: the kernels run in Python, on CPU tensors.
INTERPRETED = False
_TL_DTYPES = {}
if HAVE_TRITON:
    from triton.runtime.interpreter import InterpretedFunction
    INTERPRETED = isinstance(_sumsq_kernel, InterpretedFunction)
    _TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64,
                  torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

_tables = OrderedDict()  # key -> _Table
table_builds = 0         # how many tables were built (tests check that one is built once and reused)


class _Table:
    """The device-side chunk table of one parameter list (see the kernels' comment above)."""

    def __init__(self, tensors, batched, block, max_chunks, per_tensor=False):
        # Segments: model e (batched), tensor i (per_tensor), (model e, tensor i) = e * N + i (both), else the
        # whole list.
        t0 = tensors[0]
        E = t0.shape[0] if batched else 1
        per_model = [t.numel() // E for t in tensors]  # elements of one model's slice of each tensor
        total = E * sum(per_model)
        # Chunk length: one tile for small lists (many programs: the GPU stays busy), growing in
        # whole tiles for large ones so that launch 2, where each program re-reads its segment's
        # partials, reads about max_chunks partials per chunk of >= total/max_chunks elements.
        chunk = block * max(1, -(-total // (block * max_chunks)))
        item = t0.element_size()
        addr, numel, seg, seg_start = [], [], [], [0]
        # Chunks ordered by segment (model, tensor, or model then tensor), so each segment's partials are contiguous.
        for e in range(E):
            for i, (t, n) in enumerate(zip(tensors, per_model)):
                base = t.data_ptr() + e * n * item
                # per_tensor: an empty tensor still gets one chunk, of 0 elements, so that its segment has a
                # program that stores its norm (0) and the norms need no zero-fill (a third launch).
                for off in range(0, n, chunk) if n or not per_tensor else [0]:
                    addr.append(base + off * item)
                    numel.append(min(chunk, n - off))
                    seg.append(len(seg_start) - 1)  # the open segment: e, i, or e * N + i
                if per_tensor:
                    seg_start.append(len(addr))
            if not per_tensor:
                seg_start.append(len(addr))
        self.n_chunks, self.n_segments, self.batched = len(addr), len(seg_start) - 1, batched
        self.aligned = all(a % 16 == 0 for a in addr)
        # One host->device copy, once per parameter list; the kernels only ever read these.
        table = torch.tensor(addr + numel + seg + seg_start, dtype=torch.int64).to(t0.device)
        C = self.n_chunks
        self.addr, self.numel, self.seg, self.seg_start = table[:C], table[C:2 * C], table[2 * C:3 * C], table[3 * C:]
        self.device, self.acc = t0.device, _acc_dtype(tensors)
        # What every call needs, made once: at the paper's model sizes a projection costs its host-side
        # work, not its memory traffic (kernels/README.md). The partials are launch 1's scratch, read
        # only by launch 2 of the same call on the same stream, so one buffer serves every call.
        self.partials = torch.empty(C, dtype=self.acc, device=t0.device)
        self.meta = dict(DTYPE=_TL_DTYPES[t0.dtype], ACC=_TL_DTYPES[self.acc], BLOCK=block, ALIGNED=self.aligned,
                         num_warps=NUM_WARPS)


def unsupported_reason(tensors):
    """Why the Triton kernels cannot take this list, or None if they can. Arguments that neither path takes
    (dtypes, devices, ensemble dims, targets) were refused before, by kernels/__init__.py's _check."""
    if not HAVE_TRITON:
        return "triton is not installed"
    t0 = tensors[0]
    if t0.device.type == "cpu" and not INTERPRETED:
        return "CPU tensors need TRITON_INTERPRET=1 set before triton is first imported"
    if t0.device.type != "cpu" and INTERPRETED:
        return "TRITON_INTERPRET=1 runs kernels on the host, which can't follow device addresses"
    for t in tensors:
        if t.dtype != t0.dtype:
            return "all tensors must share one dtype (the torch path takes mixed dtypes)"
        if not t.is_contiguous():
            return "the tensors must be contiguous (they are rescaled in place through raw addresses)"
    if sum(t.numel() for t in tensors) == 0:
        return "no elements"
    return None


def chunk_table(tensors, batched, strict=True, per_tensor=False):
    """The cached chunk table of this list (one segment per tensor if per_tensor); if the kernels can't
    take it: ValueError (strict) or None."""
    global table_builds
    t0 = tensors[0]
    # Keyed on what the table and the checks depend on: a hit is always right (the table holds only
    # addresses and lengths), even if the memory now belongs to other tensors of the same layout.
    key = (batched, per_tensor, BLOCK, MAX_CHUNKS, t0.device,
           tuple((t.data_ptr(), t.shape, t.stride(), t.dtype) for t in tensors))
    tab = _tables.get(key)
    if tab is not None:
        _tables.move_to_end(key)
        return tab
    reason = unsupported_reason(tensors)
    if reason is not None:
        if strict:
            raise ValueError(f"backend='triton' cannot take these tensors: {reason}")
        return None
    if t0.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("the chunk table of a parameter list is built with a host->device copy, which a "
                           "CUDA graph cannot capture: call the function once on this list before capturing")
    tab = _tables[key] = _Table(tensors, batched, BLOCK, MAX_CHUNKS, per_tensor)
    table_builds += 1
    if len(_tables) > MAX_TABLES:
        _tables.popitem(last=False)
    return tab


def _target_args(target, norms):
    # -> (target_ptr, target_stride, target_val, TARGET_PTR) for _norm_rescale_kernel. The target was
    # checked by kernels/__init__.py's _check: a float, a 0-d or [S] tensor on the device (S: models, or tensors
    # in the per-tensor modes), or S floats; or, batched per tensor, an [E, N] tensor (segment e * N + i reads
    # element e * N + i of its row-major reshape).
    if isinstance(target, (int, float)):
        return norms, 0, float(target), False  # norms: a placeholder pointer, never read
    # A tensor (left on the device: the kernel reads it, the host never does) or, batched, a list.
    if not isinstance(target, torch.Tensor):
        target = torch.tensor(target, dtype=norms.dtype, device=norms.device)
    return target.reshape(-1), int(target.numel() > 1), 0.0, True


def launch(tab, target=None, cap=False):
    """The two launches for the list behind `tab`: its [S] segment norms, and with a target the in-place
    rescale to it (cap: only segments whose norm exceeds it); returns the norms (before the rescale)."""
    rescale = target is not None
    norms = torch.empty(tab.n_segments, dtype=tab.acc, device=tab.device)  # returned: a fresh tensor per call
    # Launch 1: per-chunk sums of squares over every tensor of the list.
    _sumsq_kernel[(tab.n_chunks,)](tab.addr, tab.numel, tab.partials, **tab.meta)
    # Launch 2: the segment norms (fixed-order sums of the partials), and the in-place rescale.
    target_ptr, stride, value, target_is_ptr = _target_args(target, norms) if rescale else (norms, 0, 0.0, False)
    _norm_rescale_kernel[(tab.n_chunks if rescale else tab.n_segments,)](
        tab.addr, tab.numel, tab.seg, tab.seg_start, tab.partials, norms, target_ptr, stride, value,
        RBLOCK=RBLOCK, TARGET_PTR=target_is_ptr, CAP=cap, RESCALE=rescale, **tab.meta)
    return norms
