"""Benchmark of the fixed-norm projection (rescale a parameter list to a target global L2 norm), in each of
kernels.project_to_norm_'s modes: global (the paper's), per_tensor, cap, cap_per_tensor.

Providers (one projection = norm of the whole list, or of each tensor, + in-place rescale of every tensor):
  loop          a per-tensor Python loop. global: the authors' code, sum of per-parameter p.norm()**2 with
                one .item() host sync each, then `p.data *= target / norm` per parameter (docs/REFERENCE.md,
                Modular addition); cap: the same, rescaling only if norm > target; per_tensor:
                `p.mul_(t / p.norm())` per parameter; cap_per_tensor: `p.mul_((t / p.norm()).clamp_(max=1))`
  foreach       kernels' torch path: torch._foreach_norm + _foreach_mul_, no host sync (the foreach reference)
  triton        kernels' fused Triton path: two launches, no host sync (CUDA only)
  triton_graph  the same two launches replayed from a CUDA graph: no launch overhead (CUDA only)
  copy          dst.copy_(src) of the flat tensor: the device's copy bandwidth, for reference (CUDA only)

Sizes: the parameter lists of the paper's models (shapes below, from docs/REFERENCE.md) and one flat
tensor of 1e4 .. 1e9 elements (cut at --max-size). Time per projection: median and quartiles over
samples of back-to-back calls, each sample ended by a device sync. GB/s counts 3 passes over the
bytes (read for the norm, read + write for the rescale); `copy` counts 2 (read + write). Targets: the
list's own norm (global, cap: a Python float), each tensor's own norm (per-tensor modes: an [N] tensor
on the device, as FixedNorm keeps them; the loop gets N floats). `vs_global` = this mode's median / the
global mode's, same case and provider, same run (the modes are timed in turns, sample by sample);
`vs_global_min` the same ratio of the fastest samples (on a loaded machine, the one that preemption spares).

--ensemble E times the batched (ensemble) form instead, kernels.project_to_norm_batched_ in each mode: every
parameter gets a leading dim E (a flat case is one [E, n/E] tensor), targets are each member's own norms
([E] tensor, or [E, N] per tensor, on the device), and `loop` runs the loop above once per member (on views).

    python bench/kernel_bench.py --device cpu --max-size 1e7 --out runs/bench/cpu   # ~20 s on 2 CPU cores
    python bench/kernel_bench.py --device cuda --out runs/bench/h200                 # ~1-2 min on an H200
    python bench/kernel_bench.py --device cpu --max-size 1e7 --ensemble 8 --out runs/bench/cpu_e8  # batched

Writes bench.csv (one row per size x provider, with device name, versions, date), bench.png
(time per projection for the models; GB/s for the flat sizes) and bench.json (machine + args).
Numbers measured so far: kernels/README.md.
"""
import argparse
import csv
import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `kernels` importable
import kernels  # noqa: E402

# ----------------------------------------------------------------------------------------------
# the paper's models, as lists of parameter shapes (PyTorch's order and layout)
# ----------------------------------------------------------------------------------------------
def _mlp(*widths):
    # nn.Linear(i, o): weight [o, i], bias [o]
    return [s for i, o in zip(widths, widths[1:]) for s in ([o, i], [o])]


def _lstm(vocab, emb, hidden, layers):
    # nn.Embedding [vocab, emb]; nn.LSTM layer l: weight_ih [4h, in], weight_hh [4h, h], bias_ih, bias_hh [4h]
    shapes = [[vocab, emb]]
    for l in range(layers):
        shapes += [[4 * hidden, emb if l == 0 else hidden], [4 * hidden, hidden], [4 * hidden], [4 * hidden]]
    return shapes + _mlp(hidden, 1)


def _transformer(p=113, d_model=128, n_heads=4, d_mlp=512, n_ctx=3):
    # Nanda et al.'s 1-layer model: W_E [d, p+1] (the '=' token), W_pos [3, d], W_Q/W_K/W_V [heads, d_head, d],
    # W_O [d, heads*d_head], W_in [d_mlp, d], b_in, W_out [d, d_mlp], b_out, W_U [d, p]; no LayerNorm, no attn biases.
    d_head = d_model // n_heads
    return ([[d_model, p + 1], [n_ctx, d_model]] + [[n_heads, d_head, d_model]] * 3 + [[d_model, n_heads * d_head]]
            + [[d_mlp, d_model], [d_mlp], [d_model, d_mlp], [d_model], [d_model, p]])


MODELS = {
    "teacher_student": _mlp(5, 100, 100, 5),      # Fig. 2: 5-100-100-5 tanh MLP
    "mnist_mlp": _mlp(784, 200, 200, 10),         # Fig. 3: 784-200-200-10, 199,210 parameters
    "imdb_lstm": _lstm(1000, 64, 128, 2),         # Fig. 4: vocab 1000, embedding 64, 2-layer LSTM 128, -> 1
    # Fig. 5 (assumed): PyG GCNConv(11 -> 64) and GCNConv(64 -> 64) (weight [out, in] + bias each), then
    # Linear(64 -> 1); 11 = QM9's node features. The authors' code used NNConv instead (docs/REFERENCE.md, QM9).
    "qm9_gcn": [[64, 11], [64], [64, 64], [64]] + _mlp(64, 1),
    "modadd_transformer": _transformer(),         # Fig. 7: p = 113, d_model 128, 4 heads, d_mlp 512
    "addition_decoder": _mlp(2, 200, 200, 30),    # Fig. 6: decoder 2-200-200-30
}
FLAT_SIZES = [10**4, 10**5, 10**6, 10**7, 10**8, 2**28, 10**9]  # 2**28 = 268M fp32 elements: the large-list case of kernels/README.md


# ----------------------------------------------------------------------------------------------
# providers: each returns a function that does one projection of `params` to norm `target`
# ----------------------------------------------------------------------------------------------
def authors_loop_(params, target):
    norm = math.sqrt(sum((p.norm() ** 2).item() for p in params))  # one host sync per parameter
    for p in params:
        p.data *= target / norm


def authors_cap_loop_(params, target):
    norm = math.sqrt(sum((p.norm() ** 2).item() for p in params))
    if norm > target:
        for p in params:
            p.data *= target / norm


def per_tensor_loop_(params, targets):
    for p, t in zip(params, targets):
        p.data.mul_(t / p.data.norm())


def cap_per_tensor_loop_(params, targets):
    for p, t in zip(params, targets):
        p.data.mul_((t / p.data.norm()).clamp_(max=1.0))


LOOPS = {"global": authors_loop_, "cap": authors_cap_loop_, "per_tensor": per_tensor_loop_,
         "cap_per_tensor": cap_per_tensor_loop_}


def make_provider(name, params, target, mode="global", batched=False):
    if name == "loop":
        loop, t = LOOPS[mode], target.tolist() if isinstance(target, torch.Tensor) else target
        if batched:  # the loop once per member, on views of member e of every parameter
            members = [[p[e] for p in params] for e in range(params[0].shape[0])]
            return lambda: [loop(m, te) for m, te in zip(members, t)]
        return lambda: loop(params, t)
    project = kernels.project_to_norm_batched_ if batched else kernels.project_to_norm_
    if name == "foreach":
        return lambda: project(params, target, mode=mode, backend="torch")
    if name == "triton":
        return lambda: project(params, target, mode=mode, backend="triton")
    if name == "triton_graph":
        for _ in range(3):  # compile, build the chunk table, warm the allocator: all before capture
            project(params, target, mode=mode, backend="triton")
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            project(params, target, mode=mode, backend="triton")
        return graph.replay
    if name == "copy":
        src = params[0]
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)
    raise ValueError(name)


def _stats(samples):
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return statistics.median(samples), q[0], q[2], len(samples), min(samples)


def time_interleaved(fns, device, budget_s, max_samples=50):
    """{key: (median, q25, q75, samples, min)} in seconds per call, over samples of back-to-back calls of each
    function, the functions taking turns sample by sample: a load change on a shared machine then hits
    all of them alike, and their ratios (the modes vs global) stay meaningful. fns: {key: function};
    one whose warm-up raises gets the exception instead of numbers."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inner, out = {}, {}
    for key, fn in fns.items():
        try:
            fn(); fn(); sync()  # warm-up: Triton compile, chunk table, allocator
            t0 = time.perf_counter(); fn(); sync()
        except Exception as e:  # one failing provider must not lose the others' numbers
            out[key] = e
            continue
        one = max(time.perf_counter() - t0, 1e-7)
        inner[key] = max(1, min(1000, int(2e-3 / one)))  # calls per sample: at least ~2 ms of work per sample
    samples = {key: [] for key in inner}
    start = time.perf_counter()
    while samples and (min(map(len, samples.values())) < 5 or (
            time.perf_counter() - start < budget_s * len(samples) and len(next(iter(samples.values()))) < max_samples)):
        for key, fn in fns.items():
            if key in samples:
                t0 = time.perf_counter()
                for _ in range(inner[key]):
                    fn()
                sync()
                samples[key].append((time.perf_counter() - t0) / inner[key])
    out.update({key: _stats(v) for key, v in samples.items()})
    return {key: out[key] for key in fns}


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where the tensors live (auto: cuda if available); triton providers need cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"],
                    help="parameter dtype (the paper's runs are float32 or float64)")
    ap.add_argument("--max-size", type=float, default=None,
                    help="largest flat size in elements (default 1e9 = 4 GB fp32 on cuda, 1e7 on cpu)")
    ap.add_argument("--providers", default="loop,foreach,triton,triton_graph,copy",
                    help="comma-separated subset of loop,foreach,triton,triton_graph,copy (CUDA-only ones "
                         "are skipped on CPU)")
    ap.add_argument("--modes", default=",".join(kernels.MODES),
                    help="comma-separated subset of " + ",".join(kernels.MODES))
    ap.add_argument("--time-per-cell", type=float, default=0.25,
                    help="seconds of sampling per size x provider (at least 5 samples are always taken)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for --device cpu (default 1: on cores shared with other jobs, "
                         "multi-threaded timings were ~12 ms scheduler time slices, not the work)")
    ap.add_argument("--ensemble", type=int, default=0,
                    help="E >= 1: time the batched form (project_to_norm_batched_) on E stacked copies of each "
                         "parameter list (default 0: the plain form)")
    ap.add_argument("--out", default=None, help="output folder (default runs/bench/<device>_<date>)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random parameter values")
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    bad = set(args.providers.split(",")) - {"loop", "foreach", "triton", "triton_graph", "copy"}
    if bad:
        ap.error(f"unknown provider(s) {sorted(bad)}")
    bad = set(args.modes.split(",")) - set(kernels.MODES)
    if bad:
        ap.error(f"unknown mode(s) {sorted(bad)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible; use --device cpu")
    if args.ensemble < 0:
        ap.error("--ensemble must be >= 0")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if args.max_size is None:
        args.max_size = 1e9 if args.device == "cuda" else 1e7
    if not args.max_size >= 1e4:
        ap.error("--max-size must be at least 1e4")
    return args


def main(argv=None):
    args = parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or f"runs/bench/{args.device}_{now:%Y%m%d_%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    providers = [p for p in args.providers.split(",")
                 if device.type == "cuda" or p in ("loop", "foreach")]  # Triton/graphs/copy: CUDA only
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    machine = {"device": device_name(device), "torch": torch.__version__, "triton": triton_version,
               "cuda": torch.version.cuda, "python": platform.python_version(),
               "date": now.isoformat(timespec="seconds"), "args": vars(args)}
    print(f"{machine['device']} | torch {machine['torch']} | triton {triton_version} | {machine['date']}")

    E = args.ensemble
    cases = [("model", name, [[E, *s] for s in shapes] if E else shapes) for name, shapes in MODELS.items()]
    cases += [("flat", f"flat_{n:.0e}".replace("e+0", "e"), [[E, n // E]] if E else [[n]])
              for n in FLAT_SIZES if n <= args.max_size]
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    modes = args.modes.split(",")
    rows = []
    print(f"{'case':>20} {'tensors':>7} {'params':>11} {'mode':>14} {'provider':>13} {'median us':>11} "
          f"{'q25..q75 us':>19} {'GB/s':>8} {'vs foreach':>10} {'vs global':>9}")
    for suite, name, shapes in cases:
        # Values drawn on the CPU (same on every device), then moved; the targets are their own norms,
        # so repeated projections leave them (up to rounding) where they are.
        params = [torch.randn(s, generator=gen).to(device, dtype) if suite == "model"
                  else torch.randn(s, device=device, dtype=dtype) for s in shapes]
        n = sum(p.numel() for p in params)
        if E:  # each member's own norms, as device tensors ([E]; [E, N] per tensor)
            targets = {"global": kernels.batched_norm(params, backend="torch"),
                       "per_tensor": kernels.batched_tensor_norms(params, backend="torch")}
        else:
            targets = {"global": float(kernels.global_norm(params, backend="torch")),
                       "per_tensor": kernels.tensor_norms(params, backend="torch")}
        results = {}
        # Provider by provider, its modes timed in turns (time_interleaved), for their ratios to global.
        for prov in providers:
            if prov == "copy" and suite != "flat":
                continue
            fns = {}
            for mode in (["-"] if prov == "copy" else modes):
                target = targets["per_tensor" if mode.endswith("per_tensor") else "global"]
                try:
                    fns[mode] = make_provider(prov, params, target, mode, batched=bool(E))
                except Exception as e:  # one failing provider must not lose the others' numbers
                    fns[mode] = e
            timed = time_interleaved({m: f for m, f in fns.items() if callable(f)}, device, args.time_per_cell)
            for mode in fns:
                res = timed.get(mode, fns[mode])
                if isinstance(res, Exception):
                    print(f"{name:>20} {mode:>14} {prov:>13} FAILED: {type(res).__name__}: {res}")
                    res = (float("nan"),) * 3 + (0, float("nan"))
                results[prov, mode] = res
        for (prov, mode), (med, q25, q75, k, fastest) in results.items():
            passes = 2 if prov == "copy" else 3
            gbps = passes * n * params[0].element_size() / med / 1e9
            ref = results.get(("foreach", mode))
            speedup = ref[0] / med if ref and prov != "copy" else float("nan")
            glob = results.get((prov, "global"))
            vs_global = med / glob[0] if glob else float("nan")
            vs_global_min = fastest / glob[4] if glob else float("nan")
            print(f"{name:>20} {len(params):>7} {n:>11,} {mode:>14} {prov:>13} {med * 1e6:>11.1f} "
                  f"{q25 * 1e6:>9.1f}..{q75 * 1e6:<9.1f} {gbps:>8.2f} {speedup:>10.2f} {vs_global:>9.3f}", flush=True)
            rows.append({"suite": suite, "case": name, "n_tensors": len(params), "n_params": n,
                         "dtype": args.dtype, "ensemble": E, "mode": mode, "provider": prov, "median_us": med * 1e6,
                         "q25_us": q25 * 1e6, "q75_us": q75 * 1e6, "min_us": fastest * 1e6, "samples": k,
                         "gb_per_s": gbps, "speedup_vs_foreach": speedup, "vs_global": vs_global,
                         "vs_global_min": vs_global_min,
                         "device": machine["device"], "torch": machine["torch"], "triton": triton_version,
                         "date": machine["date"]})
        del params
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print_mode_summary(rows, providers, modes)
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "bench.json").write_text(json.dumps(machine, indent=2))
    plot(rows, providers, machine, out / "bench.png")
    print(f"wrote {out}/bench.csv, bench.png, bench.json")


def print_mode_summary(rows, providers, modes):
    """Each mode's median / the global mode's, per case and provider (the paper's models)."""
    others = [m for m in modes if m != "global"]
    if "global" not in modes or not others:
        return
    print("\ntime vs the global mode, same provider, same run (the paper's models): median, then fastest sample")
    print(f"{'case':>20} {'provider':>13} " + " ".join(f"{m:>14}" for m in others))
    for col in ("vs_global", "vs_global_min"):
        print(f"{col}:" if col == "vs_global" else f"{col} (fastest samples):")
        ratio = {(r["case"], r["provider"], r["mode"]): r[col] for r in rows if r["suite"] == "model"}
        for case in MODELS:
            for prov in providers:
                if (case, prov, "global") in ratio:
                    print(f"{case:>20} {prov:>13} " + " ".join(f"{ratio.get((case, prov, m), float('nan')):>14.3f}"
                                                             for m in others))


def plot(rows, providers, machine, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode_rows, rows = rows, [r for r in rows if r["mode"] in ("global", "-")] or rows
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 4.5))
    models = list(MODELS)
    bar_providers = [p for p in providers if p != "copy"]
    width = 0.8 / len(bar_providers)
    for i, prov in enumerate(bar_providers):
        t = {r["case"]: r["median_us"] for r in rows if r["provider"] == prov and r["suite"] == "model"}
        ax1.bar([j + i * width for j in range(len(models))], [t.get(m, float("nan")) for m in models],
                width, label=prov)
    ax1.set_xticks([j + width * (len(bar_providers) - 1) / 2 for j in range(len(models))])
    ax1.set_xticklabels([f"{m.replace('_', chr(10))}\n{sum(math.prod(s) for s in MODELS[m]):,}" for m in models],
                        fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("time per projection (us, median)")
    ax1.set_title("paper's models (parameter count below)")
    ax1.legend(fontsize=8)
    for prov in providers:
        pts = sorted((r["n_params"], r["gb_per_s"]) for r in rows if r["provider"] == prov and r["suite"] == "flat")
        if pts:
            ax2.plot(*zip(*pts), "o-", label=prov + (" (2 passes)" if prov == "copy" else ""))
    ax2.set_xscale("log")
    ax2.set_xlabel("elements (one flat tensor)")
    ax2.set_ylabel("GB/s (3 passes over the bytes)")
    ax2.set_title("flat sizes")
    ax2.legend(fontsize=8)
    # The other modes: time / the global mode's, per model, for the fused providers; the fastest samples' ratio
    # (vs_global_min), which a loaded machine's preemptions don't reach (the medians' ratio is in bench.csv).
    others = sorted({r["mode"] for r in mode_rows} - {"global", "-"})
    fused = [p for p in ("foreach", "triton", "triton_graph") if p in providers]
    bars = [(m, p) for m in others for p in fused]
    width = 0.8 / max(1, len(bars))
    for i, (mode, prov) in enumerate(bars):
        v = {r["case"]: r["vs_global_min"] for r in mode_rows if r["mode"] == mode and r["provider"] == prov}
        ax3.bar([j + i * width for j in range(len(models))], [v.get(m, float("nan")) for m in models], width,
                label=f"{mode} ({prov})")
    ax3.axhline(1.0, color="k", lw=0.8)
    ax3.axhline(1.1, color="k", lw=0.8, ls=":")
    ax3.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(models))])
    ax3.set_xticklabels([m.replace("_", chr(10)) for m in models], fontsize=7)
    ax3.set_ylabel("fastest sample / global mode's (same provider, run)")
    ax3.set_title("modes vs global (dotted: +10%)")
    if bars:
        ax3.legend(fontsize=7)
    batched = f"batched, ensemble E = {rows[0]['ensemble']} | " if rows[0]["ensemble"] else ""
    fig.suptitle(f"fixed-norm projection, {batched}{rows[0]['dtype']} | {machine['device']} | torch {machine['torch']} | "
                 f"triton {machine['triton']} | {machine['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
