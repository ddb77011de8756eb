"""torch.compile or hand capture: one measured comparison of how to make a small model's training step cheap on a
GPU, with the setup (compilation, capture) counted in the wall time.

Variants of the same full-batch training step (forward, loss, backward, AdamW's decoupled decay, Adam step):
  eager       the step as the scripts write it
  capture     common.graph_step: the whole step captured by hand into one CUDA graph and replayed (CUDA only)
  compile     torch.compile of the forward and loss (default mode); backward and optimizer eager
  compile_ro  the same with mode="reduce-overhead" (torch.compile's own CUDA graphs; CUDA only)
Experiments: the teacher-student main job (toy_teacher_student.py defaults: alpha 2, wd 0.05, 100k steps) and the
modular-addition run (modadd_transformer.py defaults: p = 113, 15k steps), one model each, from the scripts' own
init, data and functions. Per variant: setup = the first --warmup steps (they include compiling or capturing),
then --steps timed steps (ended by a device sync); `main_job_s` = setup + the script's default step count x the
steady time a step: what the choice costs a user's run. `rel_diff` compares the loss after all steps with eager's.

    python bench/compile_vs_capture.py --device cuda --out runs/bench/compile_h200   # ~30 s on an H200
    python bench/compile_vs_capture.py --device cpu --variants eager,compile --steps 200 --out runs/bench/compile_cpu

Writes bench.csv (one row per experiment x variant) and bench.json (machine, versions, date, args, rows).
"""
import argparse
import csv
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
import modadd_transformer as mt  # noqa: E402
import toy_teacher_student as ts  # noqa: E402

VARIANTS = ["eager", "capture", "compile", "compile_ro"]
CUDA_ONLY = {"capture", "compile_ro"}


def toy(device, dtype):
    """The teacher-student main job's model, data and optimizer: (loss_fn, (opt, params, lr, wd), default steps)."""
    args = ts.parse_args([])
    (x, y), _ = ts.make_data(args, dtype, device)
    params = [t[None].clone().requires_grad_() for t in ts.mlp_params(args.seed, args.width, dtype, device)]
    common.scale_by_alpha_batched_(params, [args.alpha])
    opt = common.EnsembleAdam(params, lr=args.lr, weight_decay=0.0, capturable=device.type == "cuda")
    params, wd = opt.params, torch.tensor([args.wd], dtype=dtype, device=device)

    def loss_fn():
        return (ts.forward(params, x) - y).pow(2).mean(-1).mean(1).sum()
    return loss_fn, (opt, params, args.lr, wd), args.steps


def modadd(device, dtype):
    """The modular-addition run's model, data and optimizer."""
    args = mt.parse_args([])
    (x, y), _ = mt.make_data(args.p, args.train_frac, args.data_seed, device)
    P = mt.stack_members([mt.init_params(args.seed, args.p, args.d_model, args.n_heads, args.d_mlp, dtype, device)])
    params = list(P.values())
    common.scale_by_alpha_batched_(params, [args.alpha])
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0, capturable=device.type == "cuda")

    def loss_fn():
        return mt.loss_and_acc(P, x, y)[0].sum()
    return loss_fn, (opt, params, args.lr, args.wd), args.steps


EXPERIMENTS = {"toy": toy, "modadd": modadd}


def make_step(loss_fn, optimizer):
    opt, params, lr, wd = optimizer

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        common.decay_weights_(params, lr, wd)  # AdamW's decoupled decay, as the scripts do it
        opt.step()
    return step


def measure(experiment, variant, device, dtype, warmup, steps):
    """One variant from a fresh init: (setup seconds, steady seconds a step, final loss, default steps)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loss_fn, optimizer, main_steps = EXPERIMENTS[experiment](device, dtype)
    t0 = time.perf_counter()
    if variant.startswith("compile"):
        step = make_step(torch.compile(loss_fn, mode="reduce-overhead" if variant == "compile_ro" else None), optimizer)
    else:
        step = make_step(loss_fn, optimizer)
        step = common.graph_step(step, device) if variant == "capture" else step
    for _ in range(warmup):
        step()
    sync()
    t1 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    t2 = time.perf_counter()
    with torch.no_grad():
        final = loss_fn().item()
    return t1 - t0, (t2 - t1) / steps, final, main_steps


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if available")
    ap.add_argument("--experiments", default="toy,modadd", help="comma-separated subset of " + ",".join(EXPERIMENTS))
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated subset of " + ",".join(VARIANTS) + " (CUDA-only ones skip on a CPU)")
    ap.add_argument("--steps", type=int, default=2000, help="timed steps per variant, after the warm-up")
    ap.add_argument("--warmup", type=int, default=10,
                    help="steps counted as setup (compilation or capture happens in them; graph_step needs 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for --device cpu")
    ap.add_argument("--out", default=None, help="output folder (default runs/bench/compile_<device>_<date>)")
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, known in (("experiments", EXPERIMENTS), ("variants", VARIANTS)):
        bad = set(getattr(args, name).split(",")) - set(known)
        if bad:
            ap.error(f"unknown {name[:-1]}(s) {sorted(bad)}; known: {','.join(known)}")
    if args.steps < 1 or args.warmup < 4 or args.threads < 1:
        ap.error("--steps and --threads must be at least 1, --warmup at least 4")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible; use --device cpu")
    return args


def main(argv=None):
    args = parse_args(argv)
    device, dtype = torch.device(args.device), torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or f"runs/bench/compile_{args.device}_{now:%Y%m%d_%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    machine = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
               "python": platform.python_version(), "date": now.isoformat(timespec="seconds"), "args": vars(args)}
    print(f"{name} | torch {torch.__version__} | {machine['date']}")
    print(f"{'experiment':>10} {'variant':>10} {'setup s':>8} {'us/step':>9} {'steps/s':>9} {'main job s':>10} "
          f"{'vs eager':>8} {'rel_diff':>9}")
    rows = []
    for experiment in args.experiments.split(","):
        eager = None
        for variant in args.variants.split(","):
            row = {"experiment": experiment, "variant": variant, "device": name, "torch": torch.__version__,
                   "date": machine["date"]}
            if variant in CUDA_ONLY and device.type != "cuda":
                rows.append({**row, "status": "skipped: CUDA only"})
                continue
            try:
                setup, per_step, final, main_steps = measure(experiment, variant, device, dtype, args.warmup,
                                                             args.steps)
            except Exception as e:  # a variant that does not work here is a result too
                rows.append({**row, "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"})
                print(f"{experiment:>10} {variant:>10} failed: {rows[-1]['status']}")
                continue
            main_job = setup + main_steps * per_step
            if variant == "eager":
                eager = (main_job, final)
            row.update(status="ok", setup_s=setup, us_per_step=per_step * 1e6, steps_per_s=1 / per_step,
                       main_job_steps=main_steps, main_job_s=main_job, final_loss=final,
                       main_job_vs_eager=main_job / eager[0] if eager else None,
                       rel_diff=abs(final - eager[1]) / max(abs(eager[1]), 1e-30) if eager else None)
            rows.append(row)
            fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
            print(f"{experiment:>10} {variant:>10} {setup:8.2f} {per_step * 1e6:9.1f} {1 / per_step:9.0f} "
                  f"{main_job:10.1f} {fmt(row['main_job_vs_eager'], '8.2f')} {fmt(row['rel_diff'], '9.1e')}")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (out / "bench.json").write_text(json.dumps({**machine, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out / 'bench.csv'}")
    return rows


if __name__ == "__main__":
    main()
