"""The test kit's check_term is not flaky for a factory that draws unseeded numbers, leaves the caller's random
state alone, and still catches an autocast mismatch (moved from tests/registry/test_papercuts.py, section 5)."""

from __future__ import annotations

import random

import attrs
import pytest
import torch

from distill_core import LossTerm
from distill_core.terms.base import check_pair
from distill_core.testing import check_term


@attrs.define
class SpectralFluxConfig:
    weight: float = 1.0
    p: int = 1


class SpectralFluxLoss(LossTerm):
    """The example of docs/plugins.md, as an author writes it."""

    name = "spectral_flux"
    config_class = SpectralFluxConfig
    requires = ("recon", "target")
    zero_at_identity = True

    def forward(self, batch):
        recon, target = check_pair(self.name, batch, "recon", "target", "B, 2, F, T", channels=2)
        flux = lambda s: s[:, 0].diff(dim=-1)  # noqa: E731
        return (flux(recon) - flux(target)).abs().pow(self.config.p).mean()


def docs_factory(dtype, device):  # the factory of docs/plugins.md: two unseeded draws per call
    return {
        "recon": torch.rand(2, 2, 16, 32, dtype=dtype, device=device),
        "target": torch.rand(2, 2, 16, 32, dtype=dtype, device=device),
    }


def test_check_term_passes_the_docs_example_under_any_global_seed():
    for seed in range(20):
        torch.manual_seed(seed)
        check_term(SpectralFluxLoss, docs_factory, gradcheck=False, compile_backend="")


def test_check_term_uses_one_batch_even_when_the_factory_ignores_torch_seeds():
    calls = []

    def python_random_factory(dtype, device):  # a factory torch.manual_seed cannot tame
        rng = random.Random()
        calls.append(dtype)
        values = [[rng.random() for _ in range(32)] for _ in range(2 * 2 * 16 * 2)]
        t = torch.tensor(values, dtype=dtype, device=device).reshape(2, 2, 2, 16, 32)
        return {"recon": t[0], "target": t[1]}

    check_term(SpectralFluxLoss, python_random_factory, gradcheck=False, compile_backend="")
    assert calls == [torch.float32]  # one batch for float32, autocast and zero-at-identity


def test_check_term_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_term(SpectralFluxLoss, docs_factory, gradcheck=False, compile_backend="")
    assert torch.equal(torch.rand(3), expected)


def test_check_term_still_catches_an_autocast_mismatch():
    class HalfBroken(SpectralFluxLoss):
        name = "half_broken"

        def forward(self, batch):
            value = super().forward(batch)
            return value * 1.1 if torch.is_autocast_enabled("cpu") else value

    with pytest.raises(
        AssertionError, match="half_broken on cpu: bfloat16 autocast value .* vs float32 .* on the same batch"
    ):
        check_term(HalfBroken, docs_factory, gradcheck=False, compile_backend="")
