"""Unit tests of common.py: alpha scaling, projection, schedule, summaries, JSON, optimizer equivalence."""
import json
import math

import pytest
import torch

import common


def _params(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(7, 13), torch.nn.ReLU(), torch.nn.Linear(13, 3)).to(dtype)
    return list(net.parameters())


def test_scale_by_alpha_multiplies_norm_by_alpha():
    params = _params()
    before = [p.detach().clone() for p in params]
    w0, w = common.scale_by_alpha_(params, 3.7)
    assert common.global_norm(params).item() == pytest.approx(3.7 * w0, rel=1e-12)
    assert w == pytest.approx(3.7 * w0, rel=1e-12)
    for p, b in zip(params, before):  # every parameter, biases included, is scaled
        torch.testing.assert_close(p.detach(), 3.7 * b)


def test_projection_single_and_batched_land_on_target():
    params = _params()
    old = common.project_to_norm_([p.data for p in params], 2.5)
    assert old.item() > 0
    assert common.global_norm(params).item() == pytest.approx(2.5, rel=1e-12)
    stacked = [torch.randn(4, 3, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)]
    targets = torch.tensor([0.5, 1.0, 2.0, 8.0], dtype=torch.float64)
    common.project_to_norm_batched_(stacked, targets)
    torch.testing.assert_close(common.batched_norm(stacked), targets)


def test_log_steps_dense_early_sparse_late_and_ends_at_total():
    s = common.log_steps(100_000, 150)
    assert s[0] == 0 and s[-1] == 100_000
    assert all(a < b for a, b in zip(s, s[1:]))
    assert s[1:6] == [1, 2, 3, 4, 5]
    assert 100 <= len(s) <= 151
    assert common.log_steps(1) == [0, 1]
    assert common.log_steps(7, 3)[-1] == 7


def test_grok_summary_on_hand_made_curve():
    steps = [0, 10, 100, 1000, 10000]
    m = {"train_acc": [0.0, 0.5, 0.97, 1.0, 1.0], "test_acc": [0.0, 0.1, 0.2, 0.6, 0.96],
         "train_loss": [1.0, 0.5, 0.01, 0.001, 0.001], "test_loss": [1.0, 0.9, 0.8, 0.3, 0.01],
         "w": [10.0, 11.0, 12.0, 6.0, 5.0]}
    s = common.grok_summary(steps, m, acc_threshold=0.95)
    assert s["train_acc_step"] == 100 and s["test_acc_step"] == 10000 and s["grok_ratio"] == 100
    assert (s["w_init"], s["w_min"], s["w_final"]) == (10.0, 5.0, 5.0)
    assert s["final_test_acc"] == 0.96 and s["final_train_loss"] == 0.001
    s = common.grok_summary(steps, m, acc_threshold=0.99)
    assert s["train_acc_step"] == 1000 and s["test_acc_step"] is None and s["grok_ratio"] is None
    s = common.grok_summary(steps, m, loss_threshold=0.02)
    assert s["train_loss_step"] == 100 and s["test_loss_step"] == 10000


def test_fit_loglog_slope_ignores_censored_points():
    x = [0.1, 0.3, 1.0, 3.0]
    assert common.fit_loglog_slope(x, [5 / v for v in x]) == pytest.approx(-1.0)
    assert common.fit_loglog_slope(x, [None, 50 / 3, 5.0, None]) == pytest.approx(-1.0)
    assert common.fit_loglog_slope(x, [None, None, 5.0, None]) is None


@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_adam_plus_decay_weights_equals_adamw(wd):
    """decay_weights_ + Adam(wd=0) is torch's AdamW; with a per-member wd tensor each member is its own AdamW."""
    ref, ours = _params(1), _params(1)
    ref = [p.detach().clone().requires_grad_() for p in ref]
    ours = [p.detach().clone().requires_grad_() for p in ours]
    opt_ref = torch.optim.AdamW(ref, lr=1e-2, weight_decay=wd)
    opt = torch.optim.Adam(ours, lr=1e-2, weight_decay=0)
    for step in range(20):
        for ps, o in ((ref, opt_ref), (ours, opt)):
            o.zero_grad()
            sum((p ** 3).sum() * (step + 1) for p in ps).backward()
        common.decay_weights_(ours, 1e-2, wd)
        opt_ref.step()
        opt.step()
    for a, b in zip(ref, ours):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    # batched: member e decays with wd[e]
    stacked = [torch.ones(3, 4, dtype=torch.float64)]
    common.decay_weights_(stacked, 0.1, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(stacked[0][:, 0], torch.tensor([1.0, 0.9, 0.8], dtype=torch.float64))


def test_write_json_is_atomic_and_readable(tmp_path):
    common.write_json(tmp_path / "a" / "x.json", {"v": torch.tensor([1.5]), "n": None})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"v": [1.5], "n": None}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_nonfinite_names_the_first_bad_loss():
    assert common.nonfinite([1.0, 2.0], 3) is None
    err = common.nonfinite([1.0, math.inf, math.nan], 7)
    assert isinstance(err, common.NonFiniteLoss) and "inf at step 7" in str(err)


def test_scale_by_alpha_batched_scales_each_member_by_its_alpha():
    stacked = [torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)]
    w0 = common.batched_norm(stacked)
    w = common.scale_by_alpha_batched_(stacked, [0.5, 1.0, 9.0])
    expected = torch.tensor([0.5, 1.0, 9.0], dtype=torch.float64) * w0
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(common.batched_norm(stacked), expected)


def _member_run(opt_cls, E, pos, dtype, steps=100, **kw):
    """Member `pos` of an E-member ensemble after `steps` Adam steps on a member-wise loss (the other members are
    different). A member has 13 x 11 and 15 elements: up to 15 of them fall in a tensor's last numel % 16, which
    torch's CPU fused Adam updates in a scalar loop. Returns that member's tensors and the optimizer."""
    g = torch.Generator().manual_seed(E)
    params = [torch.randn(E, 13, 11, generator=g, dtype=dtype), torch.randn(E, 15, generator=g, dtype=dtype)]
    for p, t in zip(params, (torch.linspace(-2, 2, 143, dtype=dtype).view(13, 11), torch.linspace(-3, 1, 15, dtype=dtype))):
        p[pos] = t
    params = [p.requires_grad_() for p in params]
    opt = opt_cls(params, lr=1e-2, **kw)
    params = getattr(opt, "params", params)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        sum((torch.sin(3 * p) * (p - 0.1 * step)).sum() for p in params).backward()
        opt.step()
    return [p[pos].detach().clone() for p in params], opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ensemble_adam_member_does_not_depend_on_its_ensemble(dtype):
    """A member's trajectory is bit for bit the same alone or at any place of a larger ensemble (a grid's shard ==
    the whole grid), and it is Adam's."""
    ref, _ = _member_run(common.EnsembleAdam, 1, 0, dtype)
    for E in (2, 3, 7, 9):
        for pos in (0, E // 2, E - 1):
            got, opt = _member_run(common.EnsembleAdam, E, pos, dtype)
            assert all(torch.equal(a, b) for a, b in zip(got, ref)), (E, pos)
    for buf, p in zip(opt.param_groups[0]["params"], opt.params):  # the padding stays zero
        assert buf.numel() % common.EnsembleAdam.PAD == 0 and not buf[p.numel():].any()
        assert not opt.state[buf]["exp_avg"][p.numel():].any()
    adam, _ = _member_run(torch.optim.Adam, 1, 0, dtype, foreach=False)
    for a, b in zip(ref, adam):
        torch.testing.assert_close(a, b, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_norm_of_a_member_does_not_depend_on_its_ensemble(dtype):
    """(Summing the per-tensor norms over dim 0 of [tensors, E] gave float64 members other last bits at E = 1.)"""
    g = torch.Generator().manual_seed(0)
    shapes = [(100, 5), (100,), (100, 100), (100,), (5, 100), (5,), (7,), (3, 3)]
    for trial in range(5):
        member = [torch.randn(1, *s, generator=g, dtype=dtype) * (trial + 1) for s in shapes]
        ref = common.batched_norm(member)[0]
        for E in (2, 3, 8, 9):
            for pos in (0, E - 1):
                stacked = [torch.randn(E, *t.shape[1:], generator=g, dtype=dtype) for t in member]
                for s, t in zip(stacked, member):
                    s[pos] = t[0]
                assert common.batched_norm(stacked)[pos] == ref, (trial, E, pos)
