"""The commitment and codebook terms on their own: values against loops, where the gradient stops, layouts,
refused inputs and configs, the test kit's conformance check, and discovery through the installed entry point."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from distill_quantizer import CodebookConfig, CodebookLoss, CommitmentConfig, CommitmentLoss

import distill_core
from distill_core import BatchError, CombinedLoss, ConfigError, InvalidConfig, load_config
from distill_core.registry.discovery import validate_term_class
from distill_core.testing import check_discovery, check_term

TERMS = {"commitment": (CommitmentLoss, CommitmentConfig, "z_e"), "codebook": (CodebookLoss, CodebookConfig, "z_q")}


def stages(dtype=torch.float32, device="cpu", shape=(3, 2, 4, 5), seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "z_e": torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device),
        "z_q": torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device),
    }


def loop_reference(z_e: torch.Tensor, z_q: torch.Tensor, reduction: str) -> float:
    """Per stage: each example's mean squared difference over channels and frames, their mean over examples;
    then the stages summed or averaged (the anchors' reductions, written as plain loops)."""
    batch, n_q = z_e.shape[:2]
    per_stage = []
    for q in range(n_q):
        per_example = []
        for b in range(batch):
            pairs = list(zip(z_e[b, q].flatten().tolist(), z_q[b, q].flatten().tolist()))
            per_example.append(sum((e - c) ** 2 for e, c in pairs) / len(pairs))
        per_stage.append(sum(per_example) / batch)
    return sum(per_stage) / (n_q if reduction == "mean" else 1)


@pytest.mark.parametrize("name", sorted(TERMS))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_value_against_a_loop_reference(name, reduction):
    cls, config, _ = TERMS[name]
    b = stages(torch.float64)
    got = float(cls(config(stage_reduction=reduction))(b))
    assert got == pytest.approx(loop_reference(b["z_e"], b["z_q"], reduction), rel=1e-12)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_the_gradient_reaches_only_the_moving_input(name):
    """commitment moves z_e toward fixed codes; codebook moves z_q toward a fixed z_e: 2 (moving - fixed) / n
    per stage, n the elements of one stage, and no gradient at all at the fixed input."""
    cls, config, moving = TERMS[name]
    b = {k: v.clone().requires_grad_(True) for k, v in stages(torch.float64).items()}
    cls(config())(b).backward()
    fixed = "z_q" if moving == "z_e" else "z_e"
    assert b[fixed].grad is None
    per_stage_elements = b["z_e"][:, 0].numel()
    expected = 2 * (b[moving] - b[fixed]).detach() / per_stage_elements
    torch.testing.assert_close(b[moving].grad, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_concatenated_stages_equal_stacked_ones(name):
    """[B, Q, D, T] and the same stages along channels, [B, Q * D, T] (DAC's ``latents`` layout), give one value;
    unequal widths read each stage's own channels; fewer channels read the first stages only."""
    cls, config, _ = TERMS[name]
    b = stages(torch.float64)
    flat = {k: v.flatten(1, 2) for k, v in b.items()}
    stacked = cls(config())(b)
    torch.testing.assert_close(cls(config(codebook_dims=(4, 4)))(flat), stacked, rtol=1e-14, atol=0)
    torch.testing.assert_close(cls(config(codebook_dims=(4, 4, 4)))(flat), stacked, rtol=1e-14, atol=0)
    first = {k: v[:, :1] for k, v in b.items()}
    torch.testing.assert_close(
        cls(config(codebook_dims=(4, 4)))({k: v[:, :4] for k, v in flat.items()}), cls(config())(first)
    )
    uneven = {"z_e": flat["z_e"][:, :7], "z_q": flat["z_q"][:, :7]}
    got = cls(config(codebook_dims=(3, 4)))(uneven)
    split = [({k: v[:, :3] for k, v in uneven.items()}), ({k: v[:, 3:] for k, v in uneven.items()})]
    expected = sum(((p["z_e"] - p["z_q"]) ** 2).mean() for p in split)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)


def test_masked_stages_count_as_zeros_in_the_batch_mean():
    """Quantizer dropout as DAC applies it: a dropped stage of an example adds 0, and the batch mean still divides
    by the whole batch (the parity tests check this against DAC itself)."""
    b = stages(torch.float64)
    mask = torch.ones(3, 2, 1, 1, dtype=torch.float64)
    mask[0, 1] = 0.0
    masked = {k: v * mask for k, v in b.items()}
    kept = ((b["z_e"] - b["z_q"]) ** 2).mean(dim=(2, 3))  # [B, Q]
    expected = (kept * mask[:, :, 0, 0]).mean(dim=0).sum()
    torch.testing.assert_close(CommitmentLoss(CommitmentConfig())(masked), expected, rtol=1e-14, atol=0)


def _for_the_kit(cls: type, moving: str) -> type:
    """The term as the test kit can check it: with its fixed input read from the batch as data, not declared.

    check_term expects a gradient at every input a term requires and gradchecks all of them; these terms stop the
    gradient at one input by design (the stop-gradient is the loss), which gradcheck's finite differences would
    see. Every other property (a finite 0-dim value, the gradient at the moving input, float64 gradcheck,
    bfloat16 autocast, torch.compile, the config round trip) is checked on the term's own forward; the real
    classes pass discovery's checks (validate_term_class), and the fixed input's lack of gradient is tested above.
    """
    return type(f"{cls.__name__}ForTheKit", (cls,), {"requires": (moving,)})


@pytest.mark.parametrize("name", sorted(TERMS))
@pytest.mark.parametrize("options", [{}, {"stage_reduction": "mean"}, {"codebook_dims": (4, 3, 2)}])
def test_conformance(name, options):
    cls, config, moving = TERMS[name]
    validate_term_class(cls)
    shape = (3, 9, 5) if "codebook_dims" in options else (3, 2, 4, 5)
    check_term(_for_the_kit(cls, moving), lambda dtype, device: stages(dtype, device, shape), config(**options))


@pytest.mark.parametrize(
    "batch, options, message",
    [
        (
            {"z_e": torch.randn(3, 4, 5), "z_q": torch.randn(3, 4, 5)},
            {},
            "commitment: batch['z_e'] expected shape [B, Q, D, T] (4-D), got [3, 4, 5] (3-D)",
        ),
        (
            {"z_e": torch.randn(3, 2, 4, 5), "z_q": torch.randn(3, 2, 4, 6)},
            {},
            "batch['z_e'] has shape [3, 2, 4, 5] but batch['z_q'] has [3, 2, 4, 6]",
        ),
        (
            {"z_e": torch.randn(3, 6, 5), "z_q": torch.randn(3, 6, 5)},
            {"codebook_dims": (4, 4)},
            "have 6 channels (dim 1), but codebook_dims [4, 4] concatenates its first stages to one of 4, 8",
        ),
        (
            {"z_e": torch.zeros(3, 2, 4, 5, dtype=torch.long), "z_q": torch.randn(3, 2, 4, 5)},
            {},
            "batch['z_e'] expected a floating dtype, got torch.int64",
        ),
    ],
)
def test_bad_inputs_name_the_key(batch, options, message):
    with pytest.raises(BatchError) as err:
        CommitmentLoss(CommitmentConfig(**options))(batch)
    assert message in str(err.value)
    with pytest.raises(BatchError, match="term 'commitment' requires batch key 'z_q'"):
        CommitmentLoss(CommitmentConfig())({"z_e": batch["z_e"]})


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"stage_reduction": "avg"}, "stage_reduction: expected one of 'sum', 'mean', got 'avg'"),
        ({"codebook_dims": (8, 0)}, "codebook_dims[1]: expected a whole number of channels from 1 to 65536, got 0"),
        ({"codebook_dims": (True,)}, "codebook_dims[0]: expected a whole number of channels"),
        ({"codebook_dims": 8}, "codebook_dims: expected a list of stage widths, got int"),
    ],
)
@pytest.mark.parametrize("config", [CommitmentConfig, CodebookConfig])
def test_bad_options_are_refused_naming_the_key(config, options, problem):
    with pytest.raises(InvalidConfig) as err:
        config(**options)
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "section, problem",
    [
        ({"stage_reduction": "avg"}, "terms.codebook.stage_reduction: expected one of 'sum', 'mean', got 'avg'"),
        ({"codebook_dims": [8, -1]}, "terms.codebook.codebook_dims[1]: expected a whole number of channels"),
        ({"codebook_dims": 8}, "terms.codebook.codebook_dims: expected a list of int, got 8"),
        ({"weight": -1.0}, "terms.codebook.weight: expected a finite weight >= 0, got -1.0"),
        ({"reduction": "sum"}, "terms.codebook.reduction: unknown key"),
    ],
)
def test_config_files_are_refused_naming_the_key(section, problem):
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"codebook": section}})
    assert problem in str(err.value)


def test_discovered_through_the_entry_point():
    for cls in (CommitmentLoss, CodebookLoss):
        info = check_discovery(cls, "distill-quantizer")
        assert str(info.provenance) == "distill-quantizer==0.1.0"


def dac_vq_config() -> dict[str, Any]:
    """DAC's quantizer losses as its conf/base.yml weighs them, reading a codec's own batch keys."""
    keys = {"z_e": "latents", "z_q": "codes"}
    return {
        "recipe": "none",
        "terms": {
            "commitment": {"weight": 0.25, "inputs": keys},
            "codebook": {"weight": 1.0, "inputs": keys},
        },
    }


def test_a_config_remaps_the_keys_and_round_trips(tmp_path):
    c = load_config(dac_vq_config())
    assert load_config(distill_core.dump_config(c, tmp_path / "c.toml")) == c
    b = stages()
    latents = b["z_e"].clone().requires_grad_(True)
    codes = b["z_q"].clone().requires_grad_(True)
    out = CombinedLoss(c)({"latents": latents, "codes": codes})
    commitment = CommitmentLoss(CommitmentConfig())(b)
    codebook = CodebookLoss(CodebookConfig())(b)
    torch.testing.assert_close(out["commitment_loss"], commitment)
    torch.testing.assert_close(out["codebook_loss"], codebook)
    torch.testing.assert_close(out["total_loss"], 0.25 * commitment + codebook)
    out["total_loss"].backward()
    per_stage_elements = b["z_e"][:, 0].numel()
    torch.testing.assert_close(latents.grad, 0.25 * 2 * (b["z_e"] - b["z_q"]) / per_stage_elements)
    torch.testing.assert_close(codes.grad, 2 * (b["z_q"] - b["z_e"]) / per_stage_elements)


def test_the_declared_layouts_are_checked_on_the_first_batch():
    loss = CombinedLoss(load_config(dac_vq_config()))
    with pytest.raises(BatchError, match=r"batch layouts do not fit the terms: .*\[B, Q, D, T\]"):
        loss({"latents": torch.randn(3, 8, 5), "codes": torch.randn(3, 8, 5)})
    concatenated = dac_vq_config()
    for section in concatenated["terms"].values():
        section["codebook_dims"] = [4, 4]
    out = CombinedLoss(load_config(concatenated))({"latents": torch.randn(3, 8, 5), "codes": torch.randn(3, 8, 5)})
    assert out["commitment_loss"].dim() == 0
