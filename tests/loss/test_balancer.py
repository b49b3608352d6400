"""GradientBalancer against a reference written from the paper's definition, plus sync, non-finite and resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from distill_core import InvalidConfig
from distill_core.config.converter import structure_checked
from distill_core.loss.balancer import BalancerConfig, GradientBalancer
from distill_core.testing import SYNC_METHODS  # sync_counter, the fixture, is the test kit's


class TinyModel(torch.nn.Module):
    """x -> y [B, 2, 3] (read by the balanced terms) and mu [B, 4] (read only by the KL-like term)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(5, 8)
        self.head = torch.nn.Linear(8, 6)
        self.stats = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.head(h).view(-1, 2, 3), self.stats(h)


def terms(y, mu, target, other):
    """Balanced terms: an L1, an MSE and an L1 with a 100x gradient; the KL-like term does not read y."""
    values = {
        "l1": (y - target).abs().mean(),
        "mse": (y - target).pow(2).mean(),
        "loud": 100 * (y - other).abs().mean(),
    }
    return values, 0.5 * mu.pow(2).sum(1).mean()


class PaperBalancer:
    """Défossez et al. 2022 §3.4 as written: G = sum_i R w_i/sum(w) g_i / (eps + EMA||g_i||), EMA = s/n with
    s <- beta s + ||g||, n <- beta n + 1 (EnCodec's averager). Python floats; a weight of 0 leaves the term out."""

    def __init__(self, weights, total_norm=1.0, beta=0.999, per_item=True, eps=1e-12):
        self.weights, self.total_norm, self.beta, self.per_item, self.eps = weights, total_norm, beta, per_item, eps
        self.s = {k: 0.0 for k in weights}
        self.n = {k: 0.0 for k in weights}

    def gradient(self, values, y):
        used = {k: w for k, w in self.weights.items() if w != 0}
        big_g = torch.zeros_like(y)
        for name, w in used.items():
            (g,) = torch.autograd.grad(values[name], y, retain_graph=True)
            norm = (sum(float(g[i].norm()) for i in range(len(g))) / len(g)) if self.per_item else float(g.norm())
            self.s[name] = self.beta * self.s[name] + norm
            self.n[name] = self.beta * self.n[name] + 1
            big_g += self.total_norm * w / sum(used.values()) * g / (self.eps + self.s[name] / self.n[name])
        return big_g


def data(steps, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch, 5, generator=g),
            torch.randn(batch, 2, 3, generator=g),
            torch.randn(batch, 2, 3, generator=g),
        )
        for _ in range(steps)
    ]


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def run_ours(model, balancer, weights, batches, lr=0.1):
    """Balanced steps with SGD (so y and the norms change, and the EMA matters); the grads of every step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    history, logs = [], []
    for x, target, other in batches:
        opt.zero_grad()
        y, mu = model(x)
        values, kl = terms(y, mu, target, other)
        logs.append(balancer.backward(values, weights, y, 0.3 * kl))
        history.append(grads(model))
        opt.step()
    return history, logs


def run_paper(model, reference, batches, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for x, target, other in batches:
        opt.zero_grad()
        y, mu = model(x)
        values, kl = terms(y, mu, target, other)
        big_g = reference.gradient(values, y).detach()
        ((big_g * y).sum() + 0.3 * kl).backward()  # J^T G by a surrogate, not by the balancer's mechanism
        history.append(grads(model))
        opt.step()
    return history


@pytest.mark.parametrize("per_item", [True, False])
@pytest.mark.parametrize(
    "weights", [{"l1": 1.0, "mse": 2.0, "loud": 1.0}, {"l1": 3.0, "mse": 0.0, "loud": 1.0}], ids=["all", "zero-weight"]
)
def test_parameter_gradients_match_the_paper_over_steps(per_item, weights):
    torch.manual_seed(0)
    model = TinyModel()
    twin = copy.deepcopy(model)
    batches = data(5)
    config = BalancerConfig(enabled=True, ema_decay=0.8, total_norm=2.0, per_batch_item=per_item)
    balancer = GradientBalancer(config, ["l1", "mse", "loud"])
    ours, logs = run_ours(model, balancer, weights, batches)
    theirs = run_paper(twin, PaperBalancer(weights, 2.0, 0.8, per_item), batches)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7, msg=f"step {step} {name}")
    # On the first step the EMA is this step's norm, so each share is exactly w_i / sum(w).
    total = sum(weights.values())
    for name, w in weights.items():
        assert float(logs[0][f"ratio_{name}"]) == pytest.approx(w / total, abs=1e-6)
    assert float(logs[-1]["nonfinite"]) == 0.0
    if weights["mse"] == 0.0:  # excluded: no norm taken, the average never moved
        assert float(logs[-1]["ema_norm_mse"]) == 0.0 and float(balancer.ema_count[1]) == 0.0


def test_balancing_equalises_a_100x_gradient():
    """Unbalanced, 'loud' would dominate y's gradient ~100:1; balanced, the shares follow the weights."""
    torch.manual_seed(0)
    model = TinyModel()
    balancer = GradientBalancer(BalancerConfig(enabled=True, ema_decay=0.5), ["l1", "loud"])
    x, target, other = data(1)[0]
    y, mu = model(x)
    values, _ = terms(y, mu, target, other)
    raw = {k: torch.autograd.grad(values[k], y, retain_graph=True)[0].norm() for k in ("l1", "loud")}
    assert float(raw["loud"] / raw["l1"]) > 50
    logs = balancer.backward({k: values[k] for k in ("l1", "loud")}, {"l1": 1.0, "loud": 1.0}, y)
    assert float(logs["ratio_l1"]) == pytest.approx(0.5) and float(logs["ratio_loud"]) == pytest.approx(0.5)
    assert float(logs["ema_norm_loud"] / logs["ema_norm_l1"]) > 50


@pytest.mark.parametrize("per_item", [True, False])
def test_balanced_forward_and_backward_never_sync(per_item, sync_counter):
    """The recipe's real terms (stft, mag_recon, if_recon balanced; kl as the rest): 0 syncs in 3 steps."""
    from distill_core import CombinedLoss, LossConfig

    combined = CombinedLoss(LossConfig())
    weights = combined.weights(3, 10)
    balanced = ["stft", "mag_recon", "if_recon"]
    balancer = GradientBalancer(BalancerConfig(enabled=True, per_batch_item=per_item), balanced)
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 2 * 32 * 64)
    for _ in range(3):
        out = head(torch.randn(2, 4))
        recon = torch.stack([torch.nn.functional.softplus(out[:, :2048]), torch.tanh(out[:, 2048:])], 1)
        recon = recon.view(2, 2, 32, 64)
        mu, logvar = out[:, :32], out[:, 32:64]
        batch = {"recon": recon, "target": torch.rand(2, 2, 32, 64), "mu": mu, "logvar": logvar}
        values = {name: combined.terms[name](batch) for name in balanced}
        rest = combined.terms["kl"](batch) * weights["kl"]
        logs = balancer.backward(values, {n: weights[n] for n in balanced}, recon, rest)
    assert sync_counter == {m: 0 for m in SYNC_METHODS}
    assert head.weight.grad is not None
    assert float(logs["nonfinite"]) == 0.0 and sync_counter["__float__"] == 1  # the counter counts


def bad_terms(kind):
    def make(y, mu, target, other):
        values, kl = terms(y, mu, target, other)
        if kind == "value":
            values["mse"] = values["mse"] * math.nan
        else:  # a finite value whose gradient is not: d sqrt(u)/du at u = 0
            values["mse"] = torch.sqrt((y * 0).sum())
        return values, kl

    return make


@pytest.mark.parametrize("kind", ["value", "gradient"])
def test_nonfinite_term_adds_nothing_and_leaves_its_average(kind):
    torch.manual_seed(0)
    model = TinyModel()
    batches = data(3)
    weights = {"l1": 1.0, "mse": 1.0}
    balancer = GradientBalancer(BalancerConfig(enabled=True, ema_decay=0.8), ["l1", "mse"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (x, target, other) in enumerate(batches):
        opt.zero_grad()
        y, mu = model(x)
        values, kl = (bad_terms(kind) if step == 2 else terms)(y, mu, target, other)
        before = (balancer.ema_sum.clone(), balancer.ema_count.clone())
        logs = balancer.backward({k: values[k] for k in weights}, weights, y, 0.3 * kl)
        if step < 2:
            opt.step()
    assert float(logs["nonfinite"]) == 1.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert balancer.ema_sum[1] == before[0][1] and balancer.ema_count[1] == before[1][1]  # mse's average kept
    assert balancer.ema_count[0] > before[1][0]  # l1's moved
    assert float(logs["ratio_mse"]) == 0.0 and float(logs["ratio_l1"]) == 1.0
    # The step's gradient is l1's balanced gradient (share 0.5, not redistributed) plus the KL's, exactly.
    reference = copy.deepcopy(model)
    reference.zero_grad()
    y, mu = reference(batches[2][0])
    values, kl = terms(y, mu, batches[2][1], batches[2][2])
    (g,) = torch.autograd.grad(values["l1"], y, retain_graph=True)
    norm = g.flatten(1).norm(dim=1).mean()
    ema = (before[0][0] * 0.8 + norm) / (before[1][0] * 0.8 + 1)
    ((0.5 / (1e-12 + ema) * g * y).sum() + 0.3 * kl).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    weights = {"l1": 1.0, "mse": 0.5, "loud": 2.0}
    batches = data(5)
    config = BalancerConfig(enabled=True, ema_decay=0.7)
    model = TinyModel()
    checkpoint_model = copy.deepcopy(model)
    uninterrupted, _ = run_ours(model, GradientBalancer(config, list(weights)), weights, batches)

    first = GradientBalancer(config, list(weights))
    opt = torch.optim.SGD(checkpoint_model.parameters(), lr=0.1)
    run_ours_with(checkpoint_model, first, opt, weights, batches[:3])
    path = tmp_path / "last.pt"
    torch.save(
        {"model": checkpoint_model.state_dict(), "optimizer": opt.state_dict(), "balancer": first.state_dict()}, path
    )

    state = torch.load(path, weights_only=True)
    assert set(state["balancer"]) == {"ema_sum", "ema_count"}
    resumed_model, resumed = TinyModel(), GradientBalancer(config, list(weights))
    resumed_model.load_state_dict(state["model"])
    resumed.load_state_dict(state["balancer"])
    assert torch.equal(resumed.ema_sum, first.ema_sum) and torch.equal(resumed.ema_count, first.ema_count)
    opt = torch.optim.SGD(resumed_model.parameters(), lr=0.1)
    opt.load_state_dict(state["optimizer"])
    after = run_ours_with(resumed_model, resumed, opt, weights, batches[3:])
    for a, b in zip(after, uninterrupted[3:]):
        for name in a:
            assert torch.equal(a[name], b[name]), name


def run_ours_with(model, balancer, opt, weights, batches):
    history = []
    for x, target, other in batches:
        opt.zero_grad()
        y, mu = model(x)
        values, kl = terms(y, mu, target, other)
        balancer.backward(values, weights, y, 0.3 * kl)
        history.append(grads(model))
        opt.step()
    return history


def test_config_validation_names_each_field():
    _, problems = structure_checked(
        {"ema_decay": 1.5, "total_norm": 0, "epsilon": -1.0, "input": ""}, BalancerConfig, "balancer"
    )
    fields = dict(problems)
    assert set(fields) == {"balancer.ema_decay", "balancer.total_norm", "balancer.epsilon", "balancer.input"}
    assert "got 1.5" in fields["balancer.ema_decay"] and "> 0, got 0.0" in fields["balancer.total_norm"]
    config, problems = structure_checked(
        {"enabled": True, "ema_decay": 1, "per_batch_item": False}, BalancerConfig, "balancer"
    )
    assert problems == [] and config == BalancerConfig(enabled=True, ema_decay=1.0, per_batch_item=False)
    _, problems = structure_checked({"enabled": "yes"}, BalancerConfig, "balancer")
    assert problems[0][0] == "balancer.enabled"
    with pytest.raises(InvalidConfig, match="total_norm: expected a finite number > 0, got inf"):
        BalancerConfig(total_norm=math.inf)


def test_misuse_names_the_term():
    balancer = GradientBalancer(BalancerConfig(enabled=True), ["l1", "mse"])
    y = torch.randn(2, 3, requires_grad=True)
    values = {"l1": y.abs().mean(), "mse": y.pow(2).mean()}
    with pytest.raises(KeyError, match="missing mse"):
        balancer.backward({"l1": values["l1"]}, {"l1": 1.0, "mse": 1.0}, y)
    with pytest.raises(ValueError, match="weight of term 'mse'.*got -1.0"):
        balancer.backward(values, {"l1": 1.0, "mse": -1.0}, y)
    with pytest.raises(ValueError, match="term 'mse' does not depend on the balancer input 'recon'"):
        balancer.backward(
            {"l1": values["l1"], "mse": torch.randn(2, requires_grad=True).sum()}, {"l1": 1.0, "mse": 1.0}, y
        )
    with pytest.raises(ValueError, match="'recon' does not require grad"):
        balancer.backward(values, {"l1": 1.0, "mse": 1.0}, y.detach())
    with pytest.raises(ValueError, match="distinct"):
        GradientBalancer(BalancerConfig(), ["l1", "l1"])
