"""The CUDA path's re-capture triggers, checked on the CPU. A CUDA graph replays the tensors, optimizer settings
and closures it was captured with: a step whose closure is rebound (new parameter tensors after members retire,
a counter rebound by another loop), or whose learning rate changes, must be captured anew, or the graph goes on
training what is gone. Here common.graph_step is replaced by a stand-in that records, at capture, what a graph
would hold (the identity of every tensor, list, dict and optimizer the step reaches through its closures, and the
optimizers' learning rates) and fails a later call if any of it changed. Each script's CUDA-only batch code is
forced on, and the captures are counted: one per lr decay (toy addition), one per retirement (modular addition),
one per batch length (IMDb: the short last batch), one for MNIST's batch table."""
import json

import numpy as np
import pytest
import torch

import addition_landscape as al
import common
import imdb_grok as ig
import mnist_grok as mg
import modadd_transformer as mt
from test_imdb_grok import TINY, fixture_reviews
from test_mnist_grok import write_mnist

CPU = torch.device("cpu")


def held(v, depth=0):
    """What a captured graph holds of v: identities, the optimizers' learning rates, and (for functions) the same
    of everything their closures reach."""
    if isinstance(v, torch.optim.Optimizer):
        return ("opt", id(v), tuple(g["lr"] for g in v.param_groups))
    if isinstance(v, (list, tuple)):
        return ("seq", id(v), tuple(id(x) for x in v))
    if isinstance(v, dict):
        return ("dict", id(v), tuple((k, id(x)) for k, x in v.items()))
    if callable(v) and getattr(v, "__closure__", None) and depth < 4:
        return ("fn", id(v), tuple(held(cell_value(c), depth + 1) for c in v.__closure__))
    return ("obj", id(v))


def cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a name the enclosing function has not bound yet
        return None


class StandIn:
    """graph_step's stand-in: runs the step eagerly, and fails once what the 'graph' holds has changed."""
    captures = 0

    def __init__(self, step, device=None, warmup=3):
        StandIn.captures += 1
        self.step, self.at_capture = step, held(step)

    def __call__(self):
        assert held(self.step) == self.at_capture, "a captured step was replayed after what it holds changed"
        self.step()


@pytest.fixture
def stand_in(monkeypatch):
    StandIn.captures = 0
    monkeypatch.setattr(common, "graph_step", StandIn)
    return StandIn


def test_the_stand_in_catches_a_stale_capture():
    """Controls: a rebound closure and a changed lr each fail the replay; an unchanged step replays."""
    def make():
        x = torch.zeros(1)

        def step():
            x.add_(1)

        def rebind():
            nonlocal x
            x = torch.zeros(1)
        return step, rebind
    step, rebind = make()
    graphed = StandIn(step)
    graphed()
    rebind()
    with pytest.raises(AssertionError, match="changed"):
        graphed()
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1.0)
    graphed = StandIn(lambda: opt.step())
    graphed()
    opt.param_groups[0]["lr"] = 0.5
    with pytest.raises(AssertionError, match="changed"):
        graphed()


def test_addition_lr_decay_captures_anew(stand_in):
    args = al.parse_args(["--mode", "landscape", "--width", "16", "--steps", "60", "--eval-points", "6",
                          "--lr-decay-every", "20"])
    task = al.make_task(args, CPU, torch.float32)
    got = al.train_fixed_norm(args, task, np.array([1.0, 4.0]), np.array([0.0, 0.1]), args.n_train, device=CPU,
                              dtype=torch.float32, desc="t")
    assert got[-1] is None
    assert stand_in.captures == 1 + 60 // 20  # the first capture, then one after each decay


def test_modadd_retiring_members_capture_anew(stand_in):
    args = mt.parse_args(["--p", "23", "--eval-points", "20", "--lr", "3e-3"])
    data = mt.make_data(args.p, args.train_frac, args.data_seed, CPU)
    ms, err = mt.train_ensemble(args, data, [0, 1, 2], [1.0] * 3, [1.0] * 3, 300, constrain=None, desc="t",
                                device=CPU, dtype=torch.float32, retire_at=[0.0, 0.1, 1.1])
    ends = [len(m["steps"]) for m in ms]
    assert err is None and ends[0] == 1 < ends[1] < ends[2]  # member 0 left at once, member 1 later, 2 stayed
    assert stand_in.captures == 3  # the first capture, then one per retirement


def test_mnist_batch_table_is_captured_once(stand_in, tmp_path, monkeypatch):
    write_mnist(tmp_path, n_train=300, n_test=100)
    args = mg.parse_args(["--data-dir", str(tmp_path), "--eval-points", "6", "--batch-size", "32"])
    monkeypatch.setattr(mg, "batch_table", lambda device: True)
    members = [{"alpha": a, "wd": 0.3, "n_train": 200} for a in (1.0, 4.0)]
    steps, ms, err = mg.train_ensemble(args, mg.load_mnist(args, CPU, torch.float32), members, 40, constrain="global",
                                       desc="t", device=CPU, dtype=torch.float32)
    assert err is None and steps[-1] == 40 and stand_in.captures == 1


def test_imdb_short_last_batch_has_its_own_capture(stand_in, tmp_path, monkeypatch):
    ig.reviews_path(tmp_path).parent.mkdir(parents=True)
    ig.reviews_path(tmp_path).write_text(json.dumps(fixture_reviews()))
    args = ig.parse_args(["--data-dir", str(tmp_path), "--size", "80", "--eval-points", "5", *TINY,
                          "--batch-size", "25"])
    data = ig.load_imdb(args, 80, CPU)
    assert len(data[0][0]) % args.batch_size  # an epoch ends with a short batch
    monkeypatch.setattr(ig, "batch_buffers", lambda device: True)
    members = [{"alpha": 1.0, "wd": 0.0}, {"alpha": 3.0, "wd": 1.0}]
    steps, ms, err = ig.train(args, data, members, 12, constrain="per-tensor", desc="t", device=CPU,
                              dtype=torch.float32)
    assert err is None and stand_in.captures == 2 * len(members)  # full and short batch, per member
