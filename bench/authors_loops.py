"""The authors' training loops vs ours: same machine, same process, same configuration, one table.

Each experiment script trains with a loop built for speed (data on the device as tensors, batches by
index, batched ensembles, the fused norm projection). This file re-implements, as faithfully as we can,
the loop the authors' code ran for the same experiment, and times it beside ours:
  mnist   their notebook: torchvision MNIST + ToTensor, Subset, DataLoader(shuffle), nn.Sequential,
          AdamW, float64, a tqdm update per step, their DataLoader evaluation; vs mnist_grok.train_ensemble
          in float64 and in --dtype
  modadd  their notebook: float64, full-sequence forward, the full batch re-collated through a DataLoader
          every step, AdamW, .item() norms (and, fixed-norm, a per-parameter .item() rescale every step);
          vs modadd_transformer.train_ensemble, plain and fixed-norm
  imdb    a bare nn.LSTM step on one fixed batch (the floor) vs imdb_grok.train vs their loop (DataLoader,
          hidden state carried between batches, .item() per step, one test batch evaluated every step)
  qm9     their PyG DataLoader loop (ExampleNet, AdamW, .item() per step, a fresh test batch every step)
          vs qm9_grok.train_ensemble

    python bench/authors_loops.py --experiment mnist --steps 1000                # ~20 s on 2 CPU cores
    python bench/authors_loops.py --experiment modadd                            # ~1 min
    python bench/authors_loops.py --experiment imdb                              # ~1.5 min (2 x 60 steps per loop)
    python bench/authors_loops.py --experiment qm9 --steps 1000 --threads 1      # ~40 s
    python bench/authors_loops.py --experiment mnist --device cuda --n-train 200 # other flags go to the script

Flags this file does not know are passed to the experiment script's own parser (its defaults are its
`run` mode's: the paper's model, data and optimizer), e.g. --data-dir, --n-train, --size, --p, --dtype.
Writes <out>/bench.csv (one row per loop: experiment, loop, steps, seconds, steps_per_second, vs_authors
and the experiment's own columns) and <out>/bench.json (the rows, the machine, all arguments).

Measured with this code:
- mnist (2026-11-29, 2 AMD EPYC Zen 5 cores, idle, --steps 1000): 2 threads: ours 664 train steps/s in
  float32 (a whole 1e5-step run with its evaluations projected at 650 steps/s, 2.6 min) vs 123 (108 for a
  whole run, their 191 DataLoader evaluations included) for the authors' float64 DataLoader loop: 6.0x;
  1 thread: 392 vs 103 (91): 4.2x; ours in float64: 2.1-3.3x. Ours is GEMM-bound: a step is ~176 MFLOP
  (784-200-200-10, batch 200, forward + backward), and MKL's sgemm of this shape runs at 106 GFLOP/s on
  one core, 202 on two (measured), so the GEMMs alone cap a step at ~600 / ~1,150 steps/s; the profiler
  puts 75% of our step in GEMMs. 10x their 123 steps/s would need 1,230 steps/s: above that cap. Under
  heavy load (8-11) the ratio was 12.6x: their DataLoader suffers more.
- modadd (2026-11-29, same machine, 2 threads, default 3 rounds x 20 steps): 56 s; 26.8 vs 3.0 steps/s,
  8.9x the authors' loop in float32 (4.5x in float64; 11x for the fixed-norm loop).
- imdb (2026-12-03, quick scale, 60 steps, 2 threads, idle): bare nn.LSTM step 12.5 steps/s, ours 11.4
  (0.92 of the bare step: the batch gather and clipping cost 8%), the authors' loop 9.3 (ours 1.24x: their
  per-step test batch is a forward pass more). With 20 steps the ratios were off by 1.7x: too short.
- qm9 (2026-12-03, --steps 1000 --threads 1, size 100, machine shared): ours 122-267 training steps/s vs
  the authors' loop 44-68 in the same process: 2.7x (load 2.3-2.6), 3.9x (2.7-2.8), 4.4x (2.8-3.6). What
  is left of our step is PyG's NNConv (message passing over ~300-600 edges), autograd and Adam: per-op
  overhead on tensors of a few hundred rows; theirs adds a DataLoader collation of 32 graphs and a test
  batch per step. With 2 threads on the busy machine both loops ran 5-7x slower (OpenMP threads fighting
  for the cores), so measure with --threads 1 when shared. Idle machine (2026-12-03, same flags): the
  authors' loop 116.2 steps/s, ours 359.5 (3.09x), ours --compile 739.4 (6.36x a step; a whole default
  run projected at 158 s with the 22.5 s of a cold-cache torch.compile counted: 5.44x). A profile of the
  eager step: 38% in the per-edge bmm of NNConv's message (1 x 32 by 32 x 16 for ~600 edges), 15% in mm;
  Inductor fuses that product with its neighbours.
- GPU: not measured yet (gpu_check.sh runs this file with --device cuda).
"""
import argparse
import csv
import itertools
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: the experiment scripts and common.py live in the repo root
import common  # noqa: E402

# Per experiment: the script, its timed steps per loop and rounds (the defaults the old --mode bench had).
EXPERIMENTS = {"mnist": ("mnist_grok", 300, 1), "modadd": ("modadd_transformer", 20, 3),
               "imdb": ("imdb_grok", 60, 2), "qm9": ("qm9_grok", 300, 1)}


def sync(device):
    """Wait for queued GPU work before reading the clock (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# mnist: their notebook's DataLoader loop vs mnist_grok.train_ensemble
# ----------------------------------------------------------------------------------------------
def bench_mnist(mod, args, xa, device, dtype):
    """Both: steps/s of training, the time of one evaluation (train --n-train + test 10000), and the
    projected time of a 1e5-step run with each loop's evaluation schedule. The authors' loop gets a fifth
    of the steps (it is ~5x slower)."""
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor
    from tqdm import tqdm
    data = mod.load_mnist(xa, device, dtype)
    common.require(xa.n_train <= len(data[0][0]), f"--n-train {xa.n_train} is larger than the training set.")
    n_steps_full = 100_000

    def authors(dt):
        torch.manual_seed(xa.seed)
        train = MNIST(xa.data_dir, train=True, transform=ToTensor(), download=False)
        test = MNIST(xa.data_dir, train=False, transform=ToTensor(), download=False)
        train = torch.utils.data.Subset(train, range(xa.n_train))
        loader = torch.utils.data.DataLoader(train, batch_size=xa.batch_size, shuffle=True)
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, xa.width), nn.ReLU(), nn.Linear(xa.width, xa.width),
                            nn.ReLU(), nn.Linear(xa.width, 10)).to(device, dt)
        with torch.no_grad():
            for p in mlp.parameters():
                p.data = xa.alpha * p.data
        opt = torch.optim.AdamW(mlp.parameters(), lr=xa.lr, weight_decay=xa.wd)
        one_hots = torch.eye(10, 10, dtype=dt, device=device)

        def their_eval(ds):  # compute_loss + compute_accuracy: two DataLoader passes, batch 50
            with torch.no_grad():
                for _ in range(2):
                    for x, lab in torch.utils.data.DataLoader(ds, batch_size=50, shuffle=True):
                        y = mlp(x.to(device, dt))
                        ((y - one_hots[lab]) ** 2).sum().item()

        def cycle(it):
            while True:
                yield from it
        n = max(5, args.steps // 5)
        batches = itertools.islice(cycle(loader), n + 5)
        with tqdm(total=n + 5, desc=f"authors' loop ({dt})", leave=False) as pbar:
            for i, (x, lab) in enumerate(batches):
                if i == 5:
                    sync(device)
                    t0 = time.perf_counter()  # after warm-up
                opt.zero_grad()
                loss = ((mlp(x.to(device, dt)) - one_hots[lab]) ** 2).mean()
                loss.backward()
                opt.step()
                pbar.update(1)
        sync(device)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        their_eval(train)
        their_eval(test)
        t_eval = time.perf_counter() - t0
        log_freq = math.ceil(n_steps_full / 150)
        n_evals = sum(1 for s in range(n_steps_full) if s < 30 or (s < 150 and s % 10 == 0) or s % log_freq == 0)
        return n, seconds, t_eval, n_evals

    def ours(dt):
        a = argparse.Namespace(**vars(xa))
        a.eval_points = 1  # evaluate at step 0 and the last step only; evaluation is timed apart
        (x_all, y_all), (x_te, y_te) = data
        d = ((x_all.to(dt), y_all), (x_te.to(dt), y_te))
        members = [{"alpha": xa.alpha, "wd": xa.wd, "n_train": xa.n_train}]
        mod.train_ensemble(a, d, members, 20, constrain=None, desc="warm-up", device=device, dtype=dt)
        t0 = time.perf_counter()
        mod.train_ensemble(a, d, members, args.steps, constrain=None, desc=f"our loop ({dt})", device=device, dtype=dt)
        t_loop = time.perf_counter() - t0
        params = [t[None] for t in mod.mlp_params(xa.seed, xa.width, dt, device)]
        sel = mod.subset(len(x_all), xa.n_train, xa.seed)
        t0 = time.perf_counter()
        mod.evaluate(params, d[0][0][sel], y_all[sel], xa.loss)
        mod.evaluate(params, d[1][0], y_te, xa.loss)
        t_eval = time.perf_counter() - t0
        seconds = max(t_loop - 2 * t_eval, 1e-9)  # the run's two evaluations taken out
        return args.steps, seconds, t_eval, len(common.log_steps(n_steps_full, 150))

    runs = {"authors_float64": authors(torch.float64), "ours_float64": ours(torch.float64)}
    if dtype != torch.float64:
        runs[f"ours_{xa.dtype}"] = ours(dtype)
    rows = []
    for loop, (steps, seconds, t_eval, n_evals) in runs.items():
        rows.append({"loop": loop, "steps": steps, "seconds": seconds, "steps_per_second": steps / seconds,
                     "eval_seconds": t_eval, "projected_run_seconds": n_steps_full * seconds / steps + n_evals * t_eval})
    base = rows[0]
    for r in rows:
        r["vs_authors"] = r["steps_per_second"] / base["steps_per_second"]
        r["full_run_vs_authors"] = base["projected_run_seconds"] / r["projected_run_seconds"]
    return rows


# ----------------------------------------------------------------------------------------------
# modadd: their notebook's loop vs modadd_transformer.train_ensemble, plain and fixed-norm
# ----------------------------------------------------------------------------------------------
def authors_modadd_loop(mod, xa, n_steps, *, constrain, device, first_step=0):
    """The notebook's loop: float64, full-sequence forward, the full batch re-collated through a
    DataLoader over a random_split Subset every step, AdamW, evaluation every 30 steps (10 when
    constrained) with per-parameter .item() norms, and (constrained) a per-parameter .item() norm and
    rescale after every step. Steps are numbered from first_step (for the logging schedule).
    Returns the seconds taken by the n_steps steps."""
    dtype = torch.float64
    p = xa.p
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    prompts = torch.stack([a, b, torch.full_like(a, p)], dim=1).to(device)
    data = torch.utils.data.TensorDataset(prompts, ((a + b) % p).to(device))
    n_train = int(xa.train_frac * len(data))
    train, test = torch.utils.data.random_split(data, [n_train, len(data) - n_train],
                                                generator=torch.Generator().manual_seed(xa.data_seed))
    P = mod.stack_members([mod.init_params(xa.seed, p, xa.d_model, xa.n_heads, xa.d_mlp, dtype, device)])
    params = list(P.values())

    def full_batch(ds):
        return next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds), shuffle=False)))

    def full_loss(ds):
        x, y = full_batch(ds)
        return F.cross_entropy(mod.forward_full(P, x)[0, :, -1], y)

    def full_accuracy(ds):
        x, y = full_batch(ds)
        return (mod.forward_full(P, x)[0, :, -1].argmax(1) == y).sum().item() / len(y)

    if constrain:
        with torch.no_grad():
            for t in params:
                t.mul_(xa.alpha)
        norm = np.sqrt(sum(t.pow(2).sum().item() for t in params))
    opt = torch.optim.AdamW(params, lr=xa.lr, weight_decay=0.0 if constrain else xa.wd, betas=(0.9, 0.98))
    log_every = 10 if constrain else 30
    sync(device)
    t0 = time.perf_counter()
    for epoch in range(first_step, first_step + n_steps):
        train_loss = full_loss(train)
        if epoch % log_every == 0:
            with torch.no_grad():
                full_loss(test).item(), train_loss.item(), full_accuracy(train), full_accuracy(test)
                np.sqrt(sum(t.pow(2).sum().item() for t in params))
        train_loss.backward()
        opt.step()
        if constrain:
            with torch.no_grad():
                new_norm = np.sqrt(sum(t.pow(2).sum().item() for t in params))
                for t in params:
                    t.mul_(norm / new_norm)
        opt.zero_grad()
    sync(device)
    return time.perf_counter() - t0


def bench_modadd(mod, args, xa, device, dtype):
    """The default run's loop vs the authors'. The variants take turns, --rounds rounds of --steps steps
    each, so a change in the load of a shared machine hits all of them alike. Ours evaluates at steps 0, 1
    and n of each round (far denser than a real run's ~1.5%, so its speed is understated); the authors'
    every 30 (10) steps."""
    n = args.steps
    data = mod.make_data(xa.p, xa.train_frac, xa.data_seed, device)
    xa.eval_points = 1  # log_steps(n, 1) = [0, 1, n]

    def ours(constrain, dt):
        t0 = time.perf_counter()
        _, err = mod.train_ensemble(xa, data, [xa.seed], [xa.alpha if constrain else 1.0], [xa.wd], n,
                                    constrain="global" if constrain else None, desc="ours", device=device, dtype=dt)
        if err:
            raise err
        return time.perf_counter() - t0

    variants = {  # loop -> (time n steps from step s, the authors' loop it is compared with)
        "ours_float32": (lambda s: ours(False, torch.float32), "authors_loop"),
        "authors_loop": (lambda s: authors_modadd_loop(mod, xa, n, constrain=False, device=device, first_step=s),
                         "authors_loop"),
        "ours_float64": (lambda s: ours(False, torch.float64), "authors_loop"),
        "ours_constrained_float32": (lambda s: ours(True, torch.float32), "authors_loop_constrained"),
        "authors_loop_constrained": (lambda s: authors_modadd_loop(mod, xa, n, constrain=True, device=device,
                                                                   first_step=s), "authors_loop_constrained"),
    }
    ours(False, torch.float32)  # warm-up, untimed (first-call costs: imports, allocator, thread pool)
    seconds = {k: 0.0 for k in variants}
    for r in range(args.rounds):
        for k, (fn, _) in variants.items():
            seconds[k] += fn(r * n)
    rate = {k: args.rounds * n / t for k, t in seconds.items()}
    return [{"loop": k, "steps": args.rounds * n, "seconds": seconds[k], "steps_per_second": rate[k],
             "vs_authors": rate[k] / rate[base]} for k, (_, base) in variants.items()]


# ----------------------------------------------------------------------------------------------
# imdb: a bare nn.LSTM step vs imdb_grok.train vs their loop
# ----------------------------------------------------------------------------------------------
def bench_imdb(mod, args, xa, device, dtype):
    """Train steps/s of three loops on the run's data and model: (1) bare: nn.LSTM forward + backward +
    AdamW on one fixed batch, nothing else (the floor); (2) ours: train() with one member, its batch
    gather and clipping (timed as the difference of a k- and a 2k-step run, so its two evaluations and
    set-up cancel); (3) the authors': DataLoader over a TensorDataset, the hidden state carried between
    batches, .item() for loss and accuracy, and one test batch drawn and evaluated after every step.
    Each loop is timed --steps steps per round, --rounds rounds; the fastest round counts."""
    from torch.utils.data import DataLoader, TensorDataset
    data = mod.load_imdb(xa, xa.size, device)  # missing data: one line naming `python fetch_data.py imdb`
    (x_tr, y_tr), (x_te, y_te) = data
    k, B = args.steps, xa.batch_size

    def bare():
        model = mod.make_model(xa, device, dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=xa.lr, weight_decay=xa.wd, foreach=True)
        x, y = x_tr[:B], y_tr[:B].to(dtype)

        def step():
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step()  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        sync(device)
        return time.perf_counter() - t0

    def ours():
        a = argparse.Namespace(**vars(xa))
        a.eval_points = 1
        times = []
        for n in (k, 2 * k):
            t0 = time.perf_counter()
            mod.train(a, data, [{"alpha": xa.alpha, "wd": xa.wd}], n, constrain=None, desc="ours", device=device,
                      dtype=dtype)
            times.append(time.perf_counter() - t0)
        return times[1] - times[0]

    def authors():
        model = mod.make_model(xa, device, dtype)
        common.scale_by_alpha_(model.parameters(), xa.alpha)
        opt = torch.optim.AdamW(model.parameters(), lr=xa.lr, weight_decay=xa.wd)
        criterion = nn.BCELoss()
        train_loader = DataLoader(TensorDataset(x_tr.cpu(), y_tr.cpu()), shuffle=True, batch_size=B)
        valid_loader = DataLoader(TensorDataset(x_te.cpu(), y_te.cpu()), shuffle=True, batch_size=B)

        def zeros(n):
            return tuple(torch.zeros(xa.layers, n, xa.hidden, device=device, dtype=dtype) for _ in range(2))

        def forward(x, h):  # their SentimentRNN.forward: read-out on every position, sigmoid, keep the last
            out, h = model.lstm(model.embedding(x), h)
            return torch.sigmoid(model.fc(out.reshape(-1, xa.hidden))).view(len(x), -1)[:, -1], h

        def steps(n):
            h, done = zeros(B), 0
            while True:
                for inputs, labels in train_loader:
                    inputs, labels = inputs.to(device), labels.to(device, dtype)
                    if len(inputs) < B:
                        h = zeros(len(inputs))
                    h = tuple(each.data for each in h)
                    model.zero_grad()
                    output, h = forward(inputs, h)
                    loss = criterion(output, labels)
                    loss.backward()
                    loss.item(), (torch.round(output) == labels).sum().item()
                    nn.utils.clip_grad_norm_(model.parameters(), xa.clip)
                    opt.step()
                    with torch.no_grad():  # their per-step "validation": one random test batch
                        vx, vy = next(iter(valid_loader))
                        vout, _ = forward(vx.to(device), zeros(len(vx)))
                        criterion(vout, vy.to(device, dtype)).item(), (torch.round(vout) == vy.to(device)).sum().item()
                    done += 1
                    if done == n:
                        return
        steps(1)  # warm-up
        t0 = time.perf_counter()
        steps(k)
        return time.perf_counter() - t0

    loops = {"bare_lstm_step": bare, "ours": ours, "authors": authors}
    best = {name: min(f() for _ in range(args.rounds)) for name, f in loops.items()}
    rows = [{"loop": name, "steps": k, "seconds": t, "steps_per_second": k / t} for name, t in best.items()]
    for r in rows:
        r["vs_authors"] = r["steps_per_second"] / rows[2]["steps_per_second"]
        r["vs_bare"] = r["steps_per_second"] / rows[0]["steps_per_second"]
    return rows


# ----------------------------------------------------------------------------------------------
# qm9: their PyG DataLoader loop vs qm9_grok.train_ensemble
# ----------------------------------------------------------------------------------------------
def bench_qm9(mod, args, xa, device, dtype):
    """The authors' loop (PyG DataLoader(shuffle) over the train split, their ExampleNet, AdamW, two
    .item() per step, one freshly sampled test batch per step through next(iter(testloader))) vs ours, on
    the same molecules: training steps/s, the time of one of our evaluations, and the projected time of a
    whole default run (1e5 steps for size 100)."""
    from torch_geometric.loader import DataLoader
    batch = mod.load_qm9(xa, xa.size)
    tr, te = mod.split(xa.size, xa.seed)
    data = batch.index_select(torch.arange(xa.size))
    n_full = xa.steps or mod.default_steps(xa.size, xa.batch_size, 100 * 50000)

    def authors():
        torch.manual_seed(xa.seed)
        trainloader = DataLoader([data[i] for i in tr], batch_size=xa.batch_size, shuffle=True)
        testloader = DataLoader([data[i] for i in te], batch_size=xa.batch_size, shuffle=True)
        net = mod.Net(onehot_edges=False).to(device, dtype)
        with torch.no_grad():
            for p in net.parameters():
                p.data = xa.alpha * p.data
        opt = torch.optim.AdamW(net.parameters(), lr=xa.lr, weight_decay=xa.wd)

        def epochs():
            while True:
                yield from trainloader
        done, t0, warm = 0, None, 5
        for b in epochs():
            if done == warm:
                t0 = time.perf_counter()
            if done == warm + args.steps:
                break
            net.train()
            b = b.to(device)
            opt.zero_grad()
            loss = F.mse_loss(net(b.x.to(dtype), b.edge_index, b.edge_attr.to(dtype), b.batch, b.num_graphs),
                              b.y.to(dtype))
            loss.backward()
            loss.item()
            opt.step()
            _ = loss.item() / b.num_graphs
            net.eval()
            tb = next(iter(testloader)).to(device)
            loss = F.mse_loss(net(tb.x.to(dtype), tb.edge_index, tb.edge_attr.to(dtype), tb.batch, tb.num_graphs),
                              tb.y.to(dtype))
            _ = loss.item() / tb.num_graphs
            done += 1
        seconds = time.perf_counter() - t0
        return {"loop": "authors", "steps": args.steps, "seconds": seconds, "steps_per_second": args.steps / seconds,
                "projected_run_seconds": n_full * seconds / args.steps}

    def ours(compile=False):
        train, test = mod.Graphs(batch, tr, device, dtype), mod.Graphs(batch, te, device, dtype)
        a = argparse.Namespace(**vars(xa))
        a.eval_points = 1  # evaluate at step 0 and the last step only; evaluation is timed apart
        kw = dict(wd=xa.wd, constrain=None, device=device, dtype=dtype, compile=compile)
        t0 = time.perf_counter()
        mod.train_ensemble(a, train, test, [xa.alpha], 20, desc="warm-up", **kw)
        t_warm = time.perf_counter() - t0  # with compile: torch.compile's time (a cold Inductor cache: ~25 s)
        t0 = time.perf_counter()
        mod.train_ensemble(a, train, test, [xa.alpha], args.steps, desc="our loop", **kw)
        t_loop = time.perf_counter() - t0
        _, _, forward = mod.ensemble(mod.make_net(xa.seed, dtype, device), 1)
        t0 = time.perf_counter()
        mod.evaluate(forward, train, 1)
        mod.evaluate(forward, test, 1)
        t_eval = time.perf_counter() - t0
        seconds = max(t_loop - 2 * t_eval, 1e-9)  # the run's two evaluations taken out
        n_evals = len(common.log_steps(n_full, 150))
        compile_seconds = t_warm if compile else 0.0  # counted once in a whole run
        return {"loop": "ours --compile" if compile else "ours", "steps": args.steps, "seconds": seconds,
                "steps_per_second": args.steps / seconds, "eval_seconds": t_eval, "compile_seconds": compile_seconds,
                "projected_run_seconds": compile_seconds + n_full * seconds / args.steps + n_evals * t_eval}

    rows = [authors(), ours(), ours(compile=True)]
    for r in rows:
        r["vs_authors"] = r["steps_per_second"] / rows[0]["steps_per_second"]
        r["full_run_vs_authors"] = rows[0]["projected_run_seconds"] / r["projected_run_seconds"]
    return rows


BENCHES = {"mnist": bench_mnist, "modadd": bench_modadd, "imdb": bench_imdb, "qm9": bench_qm9}


# ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    """This file's flags, and the rest (passed to the experiment script's parser)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experiment", required=True, choices=list(EXPERIMENTS), help="which script's loop to time")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto picks cuda when available, else cpu")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per loop (default: mnist 300, modadd 20, imdb 60, qm9 300; the mnist authors' "
                        "loop gets a fifth of them)")
    p.add_argument("--rounds", type=int, default=None,
                   help="modadd: rounds in which the loops take turns (default 3); imdb: best of this many rounds "
                        "(default 2); mnist and qm9 time one round")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); on a shared machine give 1 (see common.py)")
    p.add_argument("--out", default=None, help="output folder (default: runs/bench/authors_loops/<experiment>)")
    args, rest = p.parse_known_args(argv)
    script, steps, rounds = EXPERIMENTS[args.experiment]
    args.script = script
    args.steps = steps if args.steps is None else args.steps
    args.rounds = rounds if args.rounds is None else args.rounds
    args.rest = [a for a in rest if a != "--"]
    common.require(args.steps >= 5, f"--steps must be at least 5, got {args.steps}.")
    common.require(args.rounds >= 1, f"--rounds must be at least 1, got {args.rounds}.")
    common.require(args.rounds == 1 or args.experiment in ("modadd", "imdb"),
                   f"--rounds is for modadd and imdb; {args.experiment} times one round.")
    common.require(args.threads >= 0, f"--threads must be >= 0, got {args.threads}.")
    return args


def write_table(out, rows, meta):
    """bench.csv (one row per loop, the union of the columns) and bench.json (rows + machine + args)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    tmp = out / "bench.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "bench.csv")
    common.write_json(out / "bench.json", {**meta, "rows": rows})
    width = max(len(r["loop"]) for r in rows)
    print(f"{'loop':<{width}}" + "".join(f"{c:>22}" for c in cols[2:]))
    for r in rows:
        print(f"{r['loop']:<{width}}" + "".join(f"{r[c]:>22.4g}" if isinstance(r.get(c), float) else f"{r.get(c, ''):>22}"
                                             for c in cols[2:]))


def main(argv=None):
    args = parse_args(argv)
    mod = __import__(args.script)
    xa = mod.parse_args(args.rest + ["--device", args.device, "--threads", str(args.threads)])
    device, dtype = common.setup(xa)
    out = Path(args.out) if args.out else REPO / "runs" / "bench" / "authors_loops" / args.experiment
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"experiment": args.experiment, **r} for r in BENCHES[args.experiment](mod, args, xa, device, dtype)]
    meta = {"experiment": args.experiment, "script": f"{args.script}.py", "steps": args.steps, "rounds": args.rounds,
            "threads": torch.get_num_threads(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "experiment_args": vars(xa)}
    write_table(out, rows, meta)
    print(f"wrote {out / 'bench.csv'}")
    return rows


if __name__ == "__main__":
    common.main_guard(main)
