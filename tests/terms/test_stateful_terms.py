"""Multi-output and stateful terms in the core: named outputs weighted, logged and balanced on their own; an
update step on a seeded schedule kept in the loss's state; the test kit's checks of a stateful term."""

from __future__ import annotations

import random

import attrs
import pytest
import tomllib
import torch

from distill_core import CombinedLoss, ConfigError, LossTerm, dump_config, dumps_config, load_config
from distill_core.config.converter import converter
from distill_core.config.schedules import UpdateSchedule, Weight
from distill_core.loss.combined import TermBuildError, TermOutputError
from distill_core.testing import check_term


@attrs.define
class PairConfig:
    weight: Weight = 1.0
    feat_weight: float = 0.5


class Pair(LossTerm):
    """Two components of one difference, from one call: squared and absolute."""

    name = "pair"
    config_class = PairConfig
    requires = ("recon", "target")
    outputs = ("sq", "abs")

    @classmethod
    def output_weights(cls, config):
        return {"sq": 1.0, "abs": config.feat_weight}

    def forward(self, batch):
        d = batch["recon"] - batch["target"]
        return {"sq": d.square().mean(), "abs": d.abs().mean()}


@attrs.define
class OneConfig:
    weight: Weight = 1.0


class Square(LossTerm):
    name = "square"
    config_class = OneConfig
    requires = ("recon", "target")

    def forward(self, batch):
        return (batch["recon"] - batch["target"]).square().mean()


class Absolute(LossTerm):
    name = "absolute"
    config_class = OneConfig
    requires = ("recon", "target")

    def forward(self, batch):
        return (batch["recon"] - batch["target"]).abs().mean()


@attrs.define
class CriticConfig:
    weight: Weight = 1.0
    lr: float = 0.1


class Critic(LossTerm):
    """A stateful term: a linear critic of recon it trains itself (SGD with momentum) in its update step."""

    name = "critic"
    config_class = CriticConfig
    requires = ("recon", "target")
    figures = ("critic_loss", "steps")

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.randn(()), requires_grad=False)
        self.optimizer = torch.optim.SGD([self.scale], lr=config.lr, momentum=0.9)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, batch):
        return (self.scale * (batch["recon"] - batch["target"])).square().mean()

    def update(self, batch):
        self.scale.requires_grad_(True)
        try:
            loss = (self.scale * batch["recon"] - batch["target"]).square().mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        finally:
            self.scale.requires_grad_(False)
        self.steps += 1
        return {"critic_loss": loss.detach(), "steps": self.steps.clone()}

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])


@pytest.fixture
def terms(register_term):
    register_term(Pair, Square, Absolute, Critic)


def batch(seed=0, b=2, n=64):
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.randn(b, 1, n, generator=g).requires_grad_(True),
        "target": torch.randn(b, 1, n, generator=g),
    }


def config(**terms):
    return load_config({"recipe": "none", "terms": terms})


# --- multi-output terms -------------------------------------------------------------------------------------


def test_each_output_is_a_component_with_its_own_weight_and_key(terms):
    loss = CombinedLoss(config(pair={"weight": 2.0}))
    b = batch()
    out = loss(b)
    d = b["recon"] - b["target"]
    sq, ab = d.square().mean(), d.abs().mean()
    assert torch.equal(out["pair_sq_loss"], sq) and torch.equal(out["pair_abs_loss"], ab)
    assert torch.allclose(out["pair_loss"], sq + 0.5 * ab)  # the outputs under their weights: the term's value
    assert torch.allclose(out["total_loss"], 2.0 * (sq + 0.5 * ab))
    assert loss.term_keys == ("pair_loss", "pair_sq_loss", "pair_abs_loss")
    assert loss.components == ("pair_sq", "pair_abs")
    assert loss.weights() == {"pair": 2.0, "pair_sq": 1.0, "pair_abs": 0.5}
    assert loss.effective_weights(loss.weights()) == {"pair_sq": 2.0, "pair_abs": 1.0}


def test_output_weights_come_from_the_config_and_are_scheduled(terms, tmp_path):
    f = tmp_path / "loss.toml"
    f.write_text(
        'recipe = "none"\n[terms.pair]\noutputs = { abs = { schedule = "linear_warmup", max = 4.0, '
        "warmup_fraction = 0.5 } }\n"
    )
    loss = CombinedLoss(load_config(f))
    assert loss.weights(0, 10)["pair_abs"] == 0.0 and loss.weights(5, 10)["pair_abs"] == 4.0
    b = batch()
    out = loss(b, epoch=0, total_epochs=10)
    assert torch.equal(out["total_loss"], out["pair_sq_loss"])  # a zero output weight adds exactly nothing
    out = loss(b, epoch=0, total_epochs=10, weights={"pair_abs": 3.0, "pair_sq": 0.0})
    assert torch.allclose(out["total_loss"], 3.0 * out["pair_abs_loss"])
    back = load_config(tmp_path / "loss.toml")
    dump_config(back, tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml") == back


def test_unknown_outputs_and_misplaced_core_keys_name_the_term_and_what_exists(terms):
    with pytest.raises(ConfigError) as e:
        config(pair={"outputs": {"abz": 1.0}})
    assert dict(e.value.problems)["terms.pair.outputs.abz"] == (
        "'pair' has no output 'abz'; did you mean 'abs'?; its outputs: sq, abs"
    )
    with pytest.raises(ConfigError, match=r"terms.pair.outputs.sq: expected a finite weight >= 0, got -1.0"):
        config(pair={"outputs": {"sq": -1.0}})
    with pytest.raises(ConfigError) as e:
        config(square={"outputs": {"a": 1.0}, "update": {"every": 2}})
    problems = dict(e.value.problems)
    assert "'square' has no output 'a'; it has one output" in problems["terms.square.outputs.a"]
    assert "'square' has no update step to schedule" in problems["terms.square.update"]
    with pytest.raises(ConfigError, match=r"terms.pair.pit: 'pair' returns several outputs"):
        config(pair={"pit": {"axis": 1}})
    with pytest.raises(ConfigError, match=r"terms.critic.update.every: expected an int >= 1, got 0"):
        config(critic={"update": {"every": 0}})


class Clashing(Critic):
    name = "clashing"
    figures = ("loss",)  # would be logged as clashing_loss, the term's own output key


def test_an_output_key_never_collides(terms, register_term):
    with pytest.raises(
        ConfigError,
        match="output key 'pair_sq_loss' is produced twice: by term 'pair_sq' and by output 'sq' of term 'pair'",
    ):
        config(pair={}, pair_sq={"term": "square"})
    register_term(Clashing)
    with pytest.raises(
        ConfigError,
        match="output key 'clashing_loss' is produced twice: by term 'clashing' and by "
        "figure 'loss' of the update step of term 'clashing'",
    ):
        config(clashing={})
    loss = CombinedLoss(config(critic={}, pair={}))
    assert set(loss.update(batch())).isdisjoint(loss(batch()))  # figures and outputs: separate keys


def test_an_undeclared_figure_that_collides_is_refused_at_the_first_update(terms, register_term):
    class Sneaky(Critic):
        name = "sneaky"
        figures = ()

        def update(self, batch):
            super().update(batch)
            return {"loss": torch.zeros(())}

    register_term(Sneaky)
    loss = CombinedLoss(config(sneaky={}))
    with pytest.raises(TermOutputError, match="figure 'loss' would be logged as 'sneaky_loss'"):
        loss.update(batch())
    loss = CombinedLoss(config(critic={}, sneaky={}))  # each term's first figures are checked, not only the first's
    with pytest.raises(TermOutputError, match="figure 'loss' would be logged as 'sneaky_loss'"):
        loss.update(batch())


def test_a_multi_output_term_returning_the_wrong_keys_is_named(terms, register_term):
    class Wrong(Pair):
        name = "wrong"

        def forward(self, batch):
            return {"sq": super().forward(batch)["sq"]}

    register_term(Wrong)
    with pytest.raises(TermOutputError, match="term 'wrong' declares outputs sq, abs and returned keys sq"):
        CombinedLoss(config(wrong={}))(batch())


def test_outputs_equal_separate_terms_plain_and_balanced(terms):
    """Two outputs of one term weigh, sum and balance exactly as two single-output terms with those weights."""
    for balancer in ({}, {"enabled": True, "ema_decay": 0.9}):
        one = CombinedLoss(load_config({"recipe": "none", "terms": {"pair": {"weight": 3.0}}, "balancer": balancer}))
        two = CombinedLoss(
            load_config(
                {
                    "recipe": "none",
                    "balancer": balancer,
                    "terms": {"square": {"weight": 3.0}, "absolute": {"weight": 1.5}},
                }
            )
        )
        for step in range(3):
            grads, logs = [], []
            for loss in (one, two):
                b = batch(seed=step)
                out = loss(b)
                logs.append(loss.backward(out))
                grads.append(b["recon"].grad)
            assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-9), balancer
        if balancer:
            assert torch.allclose(logs[0]["ratio_pair_sq"], logs[1]["ratio_square"])
            assert torch.allclose(logs[0]["ratio_pair_abs"], logs[1]["ratio_absolute"])
            assert torch.allclose(one.balancer.ema_sum, two.balancer.ema_sum)
            assert one.balancer.terms == ["pair_sq", "pair_abs"]


def test_a_grouped_multi_output_term(terms):
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "terms": {"pair": {}, "square": {}},
                "groups": {"both": {"weight": 2.0, "members": {"pair": 0.5, "square": 1.0}}},
            }
        )
    )
    out = loss(batch())
    expected = 2.0 * (0.5 * (out["pair_sq_loss"] + 0.5 * out["pair_abs_loss"]) + out["square_loss"])
    assert torch.allclose(out["both_loss"], expected) and torch.allclose(out["total_loss"], expected)
    assert loss.effective_weights(loss.weights()) == {"pair_sq": 1.0, "pair_abs": 0.5, "square": 2.0}


# --- update steps and their schedules ------------------------------------------------------------------------


def runs(loss, calls, seed=0):
    """Which calls of update ran the critic's step."""
    ran = []
    for i in range(calls):
        ran.append("critic_steps" in loss.update(batch(seed=seed + i)))
    return ran


def test_every_start_and_probability_from_a_seeded_generator(terms):
    loss = CombinedLoss(config(critic={"update": {"every": 3, "start": 2}}))
    assert runs(loss, 9) == [False, False, True, False, False, True, False, False, True]
    loss = CombinedLoss(config(critic={"update": {"probability": 0.5, "seed": 7}}))
    torch_state, py_state = torch.random.get_rng_state(), random.getstate()
    drawn = runs(loss, 40)
    oracle = random.Random("7:critic")
    assert drawn == [oracle.random() < 0.5 for _ in range(40)] and 10 < sum(drawn) < 30
    assert torch.equal(torch.random.get_rng_state(), torch_state) and random.getstate() == py_state  # untouched
    again = CombinedLoss(config(critic={"update": {"probability": 0.5, "seed": 7}}))
    assert runs(again, 40) == drawn  # ranks with one config agree
    other = CombinedLoss(config(critic={"update": {"probability": 0.5, "seed": 8}}))
    assert runs(other, 40) != drawn
    assert int(loss.terms["critic"].steps) == sum(drawn)
    text = dumps_config(loss.config)
    assert "[terms.critic.update]" in text and load_config(tomllib.loads(text)) == loss.config


def test_a_resumed_schedule_replays_the_same_draws_and_steps_bit_exact(terms, tmp_path):
    cfg = config(critic={"update": {"probability": 0.6, "every": 2, "start": 1}})
    torch.manual_seed(0)
    straight = CombinedLoss(cfg)
    expected = runs(straight, 12)
    torch.manual_seed(0)
    first = CombinedLoss(cfg)
    got = runs(first, 6)
    torch.save(first.state_dict(), tmp_path / "loss.pt")
    torch.manual_seed(1)  # a fresh loss starts elsewhere; the loaded state decides
    resumed = CombinedLoss(cfg)
    resumed.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    got += runs(resumed, 6, seed=6)
    assert got == expected
    for key, value in straight.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed.update_clock.calls == 12


def test_a_state_saved_with_other_schedules_is_refused(terms):
    drawing = CombinedLoss(config(critic={"update": {"probability": 0.5}})).state_dict()
    plain = CombinedLoss(config(critic={}))
    plain.load_state_dict(drawing)  # more than it needs: fine
    with pytest.raises(ValueError, match="a generator for each of critic; the saved state has none"):
        CombinedLoss(config(critic={"update": {"probability": 0.5}})).load_state_dict(plain.state_dict())


def test_weight_zero_still_runs_the_update_and_eval_runs_none(terms):
    warm = {"weight": {"schedule": "linear_warmup", "max": 1.0, "warmup_fraction": 0.5}}
    loss = CombinedLoss(config(critic=warm, square={}))
    b = batch()
    scale = loss.terms["critic"].scale.clone()
    figures = loss.update(b)
    out = loss(b, epoch=0, total_epochs=10)
    assert loss.weights(0, 10)["critic"] == 0.0 and torch.equal(out["total_loss"], out["square_loss"])
    assert set(figures) == {"critic_critic_loss", "critic_steps"} and int(figures["critic_steps"]) == 1
    assert not torch.equal(loss.terms["critic"].scale, scale)
    loss.eval()
    assert loss.update(b) == {} and loss.update_clock.calls == 1
    assert int(loss.terms["critic"].steps) == 1
    assert CombinedLoss(config(square={})).update(b) == {}  # no stateful term: nothing to do


def test_update_reads_mapped_inputs_detached_and_names_a_missing_key(terms):
    loss = CombinedLoss(config(critic={"inputs": {"recon": "wave"}}))
    producer = torch.nn.Parameter(torch.ones(()))
    b = batch()
    loss.update({"wave": b["recon"] * producer, "target": b["target"]})
    assert producer.grad is None
    with pytest.raises(Exception, match="term 'critic' input 'recon' reads batch key 'wave', which the batch lacks"):
        loss.update(b)


def test_no_host_sync_over_update_forward_and_backward(terms, sync_counter):
    loss = CombinedLoss(config(critic={"update": {"probability": 0.5, "every": 2}}, pair={}))
    for step in range(4):
        b = batch(seed=step)
        loss.update(b)
        loss(b)["total_loss"].backward()
    assert sum(sync_counter.values()) == 0, sync_counter


def test_the_test_kit_checks_multi_output_and_stateful_terms(terms):
    def factory(dtype, device):
        target = torch.randn(2, 1, 64, dtype=dtype, device=device)
        return {"recon": target + 0.3 * torch.randn_like(target), "target": target}

    check_term(Pair, factory, compile_backend="")
    check_term(Critic, factory, compile_backend="")

    class Forgetful(Critic):
        name = "forgetful"

        def get_extra_state(self):
            return {}

        def set_extra_state(self, state):
            pass

    class Eager(Critic):
        name = "eager"

        def forward(self, batch):
            self.update(batch)  # trains inside the loss pass: its parameters move in eval too
            return super().forward(batch)

    with pytest.raises(AssertionError, match="an update differs from the original's"):
        check_term(Forgetful, factory, compile_backend="", gradcheck=False)
    with pytest.raises(AssertionError):
        check_term(Eager, factory, compile_backend="", gradcheck=False)


# --- building --------------------------------------------------------------------------------------------------


@attrs.define
class Inner:
    width: float = 1.0

    def __attrs_post_init__(self):
        if self.width * 8 != int(self.width * 8):
            raise ValueError(f"width: {self.width} keeps the grouped convs indivisible; use a multiple of 1/8")


class Builds(LossTerm):
    name = "builds"
    config_class = OneConfig
    requires = ("recon", "target")

    def __init__(self, config):
        super().__init__(config)
        self.inner = converter.structure({"width": 0.0625}, Inner)


def test_a_cattrs_error_at_build_keeps_its_reason(register_term):
    register_term(Builds)
    with pytest.raises(TermBuildError) as e:
        CombinedLoss(config(builds={}))
    assert "width: 0.0625 keeps the grouped convs indivisible; use a multiple of 1/8" in str(e.value)
    assert "sub-exception" not in str(e.value)


def test_update_schedule_defaults():
    assert UpdateSchedule() == UpdateSchedule(every=1, probability=1.0, start=0, seed=0)
    assert [UpdateSchedule(every=2, start=3).due(s) for s in range(7)] == [False] * 3 + [True, False, True, False]
