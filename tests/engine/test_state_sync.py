"""A stateful term's ``state_sync`` declaration (how each piece of its state stays equal across ranks): resolved
with its defaults, and refused in one line on the first update when it does not fit the term's state. And the
generator's optimizer, given the loss's parameters by mistake, cannot step the discriminator: D's gradients are
freed once D has stepped."""

from __future__ import annotations

import attrs
import pytest
import torch

from distill_core import CombinedLoss, LossTerm, Weight, load_config
from distill_core.engine.passes import LossParameterError, check_optimizer
from distill_core.terms.stateful import StateSyncError, state_sync


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (tests/conftest.py says why)."""


@attrs.define
class EMAConfig:
    weight: Weight = 1.0


class EMA(LossTerm):
    """An EMA of the target's mean square, moved by its update step."""

    name = "ema"
    config_class = EMAConfig
    requires = ("recon", "target")
    state_sync = {"energy": "mean", "seen": "sum"}

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("energy", torch.ones(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, batch):
        return self.scale * (batch["recon"] - batch["target"]).square().mean() / self.energy

    def update(self, batch):
        self.energy.mul_(0.9).add_(0.1 * batch["target"].square().mean())
        self.seen += batch["target"].shape[0]


def wrongly(name: str, declared: dict) -> type[EMA]:
    return type(name.title(), (EMA,), {"name": name, "state_sync": declared})


def batch(b: int = 2, n: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"recon": torch.randn(b, 1, n, generator=g), "target": torch.randn(b, 1, n, generator=g)}


def test_each_piece_of_state_has_its_way_declared_or_by_default(register_term):
    register_term(EMA)
    loss = CombinedLoss(load_config({"recipe": "none", "terms": {"ema": {}}}))
    assert state_sync("ema", loss.terms["ema"]) == {"scale": "grad_mean", "energy": "mean", "seen": "sum"}
    loss.update(batch())  # fits: the first update checks it and steps
    assert int(loss.terms["ema"].seen) == 2


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"energi": "mean"},
            "term 'bad': Bad.state_sync names 'energi', which is not a parameter or buffer of it; its parameters "
            "and buffers: energy, scale, seen",
        ),
        (
            {"energy": "average"},
            "term 'bad': Bad.state_sync['energy'] = 'average'; expected one of broadcast, grad_mean, mean, sum",
        ),
        (
            {"energy": "grad_mean"},
            "term 'bad': Bad.state_sync['energy'] = 'grad_mean', but 'energy' is a buffer (it has no gradient)",
        ),
        (
            {"seen": "mean"},
            "term 'bad': Bad.state_sync['seen'] = 'mean', but 'seen' is torch.int64 (a mean needs a floating dtype); "
            "use 'sum' or 'broadcast'",
        ),
    ],
)
def test_a_declaration_that_does_not_fit_is_refused_on_the_first_update(register_term, declared, message):
    register_term(wrongly("bad", declared))
    loss = CombinedLoss(load_config({"recipe": "none", "terms": {"bad": {}}}))
    with pytest.raises(StateSyncError) as e:
        loss.update(batch())
    assert str(e.value) == message
    assert int(loss.terms["bad"].seen) == 0 and loss.update_clock.calls == 0  # refused before any step


SMALL_D = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "msd", "options": {"scales": 1}},  # spectral norm on its first scale: power-iteration buffers
]
GAN = {
    "recipe": "none",
    "terms": {
        "wave_l1": {},
        "adversarial": {"preset": "dac", "width": 0.125, "discriminators": SMALL_D, "optimizer": {"lr": 1e-3}},
    },
}


def test_the_adversarial_term_declares_its_counters_and_averages_d_gradients():
    pytest.importorskip("distill_discriminators")
    loss = CombinedLoss(load_config(GAN))
    ways = state_sync("adversarial", loss.terms["adversarial"])
    params = {n for n, _ in loss.terms["adversarial"].named_parameters()}
    buffers = {n for n, _ in loss.terms["adversarial"].named_buffers()}
    assert params and all(ways[n] == "grad_mean" for n in params)
    assert ways["adversarial.updates"] == ways["adversarial.skipped"] == "broadcast"
    assert any("_u" in n for n in buffers) and all(ways[n] == "broadcast" for n in buffers)


def test_a_generator_optimizer_holding_the_loss_parameters_never_steps_d():
    pytest.importorskip("distill_discriminators")
    torch.manual_seed(0)
    loss = CombinedLoss(load_config(GAN))
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    )
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)  # the mistake
    with pytest.raises(LossParameterError):
        check_optimizer(optimizer, loss)  # what our loop would say; a plain loop may not ask
    d = dict(loss.named_parameters())
    x = 0.3 * torch.randn(2, 1, 2048)
    for step in range(2):  # the common order: zero_grad, loss.update, G loss, backward, step
        optimizer.zero_grad()
        before = {n: p.detach().clone() for n, p in d.items()}
        b = {"recon": model(x), "target": x}
        loss.update(b)
        stepped = {n: p.detach().clone() for n, p in d.items()}
        assert any(not torch.equal(stepped[n], before[n]) for n in d), step  # D's own step moved it
        assert all(p.grad is None for p in d.values()), step  # freed after D's step
        g_before = [p.detach().clone() for p in model.parameters()]
        loss.backward(loss(b))
        optimizer.step()
        assert all(torch.equal(p, stepped[n]) for n, p in d.items()), step  # the generator's Adam left D alone
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), g_before)), step
    assert int(loss.terms["adversarial"].adversarial.updates) == 2
