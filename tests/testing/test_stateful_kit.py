"""The test kit's stateful checks fail a term whose state does not survive state_dict() -> a fresh term ->
load_state_dict(), or whose forward changes its own state, each with a message that says so (issue 31, item 7);
the same term written correctly passes, so each failure is the broken piece's."""

from __future__ import annotations

import attrs
import pytest
import torch

from distill_core import LossTerm
from distill_core.testing import check_stateful, check_term

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@attrs.define
class EMAConfig:
    weight: float = 1.0
    decay: float = 0.9


class EMAEnergy(LossTerm):
    """A non-GAN stateful term, written correctly: an EMA of the target's energy (a persistent buffer) that
    ``update`` moves and ``forward`` divides by."""

    name = "ema_energy"
    config_class = EMAConfig
    requires = ("recon", "target")

    def __init__(self, config: EMAConfig) -> None:
        super().__init__(config)
        self.register_buffer("energy", torch.ones(()))

    def update(self, batch):
        with torch.no_grad():
            self.energy.mul_(self.config.decay).add_((1 - self.config.decay) * batch["target"].pow(2).mean())
        return {"energy": self.energy.clone()}

    def forward(self, batch):
        return (batch["recon"] - batch["target"]).pow(2).mean() / self.energy


class LostEMA(EMAEnergy):
    """The EMA in a buffer registered with persistent=False: not in state_dict, so a resume restarts it at 1."""

    name = "lost_ema"

    def __init__(self, config: EMAConfig) -> None:
        super().__init__(config)
        del self.energy
        self.register_buffer("energy", torch.ones(()), persistent=False)


class ForwardMovesEMA(EMAEnergy):
    """A forward that moves the EMA: the generator's pass changes the term's state."""

    name = "forward_moves_ema"

    def forward(self, batch):
        with torch.no_grad():
            self.energy.mul_(self.config.decay).add_((1 - self.config.decay) * batch["target"].pow(2).mean())
        return super().forward(batch)


class CountedEMA(EMAEnergy):
    """A bias-corrected EMA whose step count is a plain attribute: outside state_dict, lost on resume."""

    name = "counted_ema"

    def __init__(self, config: EMAConfig) -> None:
        super().__init__(config)
        self.register_buffer("energy", torch.zeros(()))
        self.steps = 0

    def update(self, batch):
        self.steps += 1
        return super().update(batch)

    def forward(self, batch):
        corrected = self.energy / (1 - self.config.decay ** (self.steps + 1))
        return (batch["recon"] - batch["target"]).pow(2).mean() / (corrected + 1e-3)


def waves(dtype, device):
    target = torch.randn(2, 1, 64, dtype=dtype, device=device)
    return {"recon": target + 0.5 * torch.randn_like(target), "target": target}


def test_a_correct_ema_term_passes_the_kit():
    check_term(EMAEnergy, waves, gradcheck=False, compile_backend="")


def test_a_persistent_false_ema_buffer_fails_saying_a_checkpoint_loses_it():
    with pytest.raises(AssertionError) as failed:
        check_term(LostEMA, waves, gradcheck=False, compile_backend="")
    assert str(failed.value).splitlines()[0] == (
        "lost_ema: update changes the buffer terms.lost_ema.energy, which state_dict() leaves out (registered "
        "with persistent=False): a checkpoint loses it and a resumed run starts it afresh; register it persistent "
        "(the default)"
    )


def test_a_forward_that_changes_the_terms_state_fails_saying_so():
    with pytest.raises(AssertionError) as failed:
        check_term(ForwardMovesEMA, waves, gradcheck=False, compile_backend="")
    assert str(failed.value).splitlines()[0] == (
        "forward_moves_ema: forward changed the term's own state (energy); the loss's pass must leave the state as "
        "it found it (a term's state changes only in its update step)"
    )


def test_check_stateful_alone_also_catches_a_forward_that_changes_state():
    with pytest.raises(AssertionError, match=r"forward_moves_ema: forward changed the term's own state \(terms\."):
        check_stateful(ForwardMovesEMA, waves)


def test_state_in_a_plain_attribute_fails_the_round_trip():
    with pytest.raises(AssertionError) as failed:
        check_term(CountedEMA, waves, gradcheck=False, compile_backend="")
    assert str(failed.value).splitlines()[0] == (
        "counted_ema: after state_dict() -> a fresh term -> load_state_dict(), forward gives other counted_ema_loss, "
        "total_loss than the original: it reads state that state_dict() does not hold (a persistent=False buffer, a "
        "plain attribute), so a resumed run would not be the same run"
    )


def test_state_in_a_plain_attribute_that_only_the_figures_read_fails_the_round_trip():
    class CountedOnly(EMAEnergy):
        """Counts its updates in a plain attribute that only its figures read."""

        name = "counted_only"

        def __init__(self, config):
            super().__init__(config)
            self.steps = 0

        def update(self, batch):
            self.steps += 1
            return {**super().update(batch), "steps": torch.tensor(float(self.steps))}

    with pytest.raises(AssertionError) as failed:
        check_stateful(CountedOnly, waves)
    assert str(failed.value).splitlines()[0] == (
        "counted_only: after state_dict() -> a fresh term -> load_state_dict(), update's figures "
        "counted_only_steps differ from the original's: the update reads state that state_dict() does not hold (a "
        "persistent=False buffer, a plain attribute), so a resumed run would not be the same run"
    )


def test_state_in_a_plain_attribute_that_nothing_reads_yet_is_named():
    class Silent(EMAEnergy):
        """Keeps its update count in a plain attribute that neither the forward nor the figures read yet."""

        name = "silent"

        def __init__(self, config):
            super().__init__(config)
            self.steps = 0

        def update(self, batch):
            self.steps += 1
            return super().update(batch)

    with pytest.raises(AssertionError) as failed:
        check_stateful(Silent, waves)
    assert str(failed.value).splitlines()[0] == (
        "silent: after state_dict() -> a fresh term -> load_state_dict() and one more update each, the attribute "
        "terms.silent.steps differs from the original's: update keeps state outside state_dict(), which a "
        "checkpoint loses; keep it in a buffer or in get_extra_state()"
    )
