"""Parity with the anchors' own quantizers: each is built small with a fixed seed and run its own way; its own
per-stage tensors (recorded as it computes them) feed our terms, and its returned losses are the expected values.
Compared: the value, and the gradient w.r.t. each stage's z_e and z_q, the quantizer's input and its parameters.

- DAC: descript-audio-codec 1.0.0, dac/nn/quantize.py, ``ResidualVectorQuantize.forward`` (commitment_loss,
  codebook_loss), in training mode with and without quantizer dropout, and in eval mode with fewer quantizers.
- EnCodec: audiocraft 1.3.0, quantization/core_vq.py ``ResidualVectorQuantization.forward`` (the per-stage
  commitment losses) and quantization/vq.py ``ResidualVectorQuantizer.forward`` (their mean, the ``penalty``),
  in training mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from distill_quantizer import CodebookConfig, CodebookLoss, CommitmentConfig, CommitmentLoss, stage_losses
from vq_anchors import audiocraft_quantization, dac_quantize

pytestmark = [  # dac/nn/layers.py's weight_norm and torch.jit.script, deprecated in this torch
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
B, DIM, T = 3, 8, 7


def max_diff(ours: torch.Tensor | None, theirs: torch.Tensor | None) -> float:
    """The largest absolute difference; both None (no gradient on either side) counts as equal."""
    assert (ours is None) == (theirs is None), f"gradient on one side only: ours {ours}, theirs {theirs}"
    if ours is None or theirs is None:
        return 0.0
    assert ours.shape == theirs.shape
    return float((ours.double() - theirs.double()).abs().max())


def assert_same(
    what: str,
    ours: torch.Tensor,
    theirs: torch.Tensor,
    wrt: Sequence[torch.Tensor],
    dtype: torch.dtype,
    tolerance: float | None = None,
) -> dict[str, float]:
    """Value and gradients w.r.t. ``wrt`` agree to the dtype's tolerance (or ``tolerance``); returns the figures."""
    tol = TOLERANCE[dtype] if tolerance is None else tolerance
    wrt = [t for t in wrt if t.requires_grad]  # audiocraft's codes are EMA buffers: no gradient to take
    grads_ours = torch.autograd.grad(ours, wrt, retain_graph=True, allow_unused=True)
    grads_theirs = torch.autograd.grad(theirs, wrt, retain_graph=True, allow_unused=True)
    figures = {
        "value": max_diff(ours.detach(), theirs.detach().reshape(ours.shape)),
        "grad": max((max_diff(a, b) for a, b in zip(grads_ours, grads_theirs)), default=0.0),
    }
    assert any(g is not None for g in grads_theirs), f"{what}: the anchor's loss has no gradient to compare"
    assert figures["value"] <= tol and figures["grad"] <= tol, f"{what}: {figures} (tolerance {tol})"
    print(f"{what} [{dtype}]: max |diff| value {figures['value']:.3g}, grad {figures['grad']:.3g}")
    return figures


# --- DAC -----------------------------------------------------------------------------------------------------


def run_dac(rvq: Any, z: torch.Tensor, **kwargs: Any) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The anchor's forward, recording what each stage's ``decode_latents`` reads and returns: the projected
    latents z_e [B, D, T] and the codebook vectors z_q [B, D, T] that its losses compare."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording(lookup: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
        def decode_latents(latents: torch.Tensor) -> Any:
            z_q, indices = lookup(latents)
            seen.append((latents, z_q))
            return z_q, indices

        return decode_latents

    for q in rvq.quantizers:
        q.decode_latents = recording(q.decode_latents)
    try:
        out = rvq(z, **kwargs)
    finally:
        for q in rvq.quantizers:
            del q.decode_latents
    return out, seen


def dac_rvq(dtype: torch.dtype, codebook_dim: int | list[int] = 4, dropout: float = 0.0, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    rvq = dac_quantize().ResidualVectorQuantize(
        input_dim=DIM, n_codebooks=3, codebook_size=16, codebook_dim=codebook_dim, quantizer_dropout=dropout
    )
    return rvq.to(dtype)


def dac_input(dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, DIM, T, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


def ours(term: type, batch: dict[str, torch.Tensor], **options: Any) -> torch.Tensor:
    config = {CommitmentLoss: CommitmentConfig, CodebookLoss: CodebookConfig}[term](**options)
    return term(config)(batch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dac_training_step(dtype):
    rvq = dac_rvq(dtype).train()
    z = dac_input(dtype)
    (_, _, _, commitment, codebook), seen = run_dac(rvq, z)
    assert len(seen) == 3
    batch = {"z_e": torch.stack([e for e, _ in seen], 1), "z_q": torch.stack([q for _, q in seen], 1)}
    wrt = [z, *(t for pair in seen for t in pair), *rvq.parameters()]
    assert_same("dac commitment", ours(CommitmentLoss, batch), commitment, wrt, dtype)
    assert_same("dac codebook", ours(CodebookLoss, batch), codebook, wrt, dtype)


@pytest.mark.parametrize("dropout, seed", [(1.0, 0), (0.5, 1)])  # 1.0: DAC's conf/base.yml
def test_dac_quantizer_dropout_as_masked_inputs(dropout, seed, monkeypatch):
    """DAC multiplies each example's stage loss by whether that stage was kept and still averages over the whole
    batch; z_e and z_q multiplied by that mask give the same value and gradients."""
    dtype = torch.float32
    rvq = dac_rvq(dtype, dropout=dropout, seed=seed).train()
    z = dac_input(dtype)
    draws: list[torch.Tensor] = []
    randint = torch.randint

    def recorded(*args: Any, **kwargs: Any) -> torch.Tensor:
        draws.append(randint(*args, **kwargs))
        return draws[-1]

    monkeypatch.setattr(torch, "randint", recorded)
    (_, _, _, commitment, codebook), seen = run_dac(rvq, z)
    monkeypatch.undo()
    # the anchor's own draw, placed as its forward places it: the first int(B * dropout) examples keep that many
    # stages, the rest all of them
    (drawn,) = draws
    kept = torch.full((B,), len(seen))
    kept[: int(B * dropout)] = drawn[: int(B * dropout)]
    assert (kept < len(seen)).any(), "the seed drops no stage: choose another"
    mask = (torch.arange(len(seen))[None, :] < kept[:, None]).to(dtype)[:, :, None, None]  # [B, Q, 1, 1]
    batch = {
        "z_e": torch.stack([e for e, _ in seen], 1) * mask,
        "z_q": torch.stack([q for _, q in seen], 1) * mask,
    }
    wrt = [z, *(t for pair in seen for t in pair), *rvq.parameters()]
    assert_same(f"dac commitment, dropout {dropout}", ours(CommitmentLoss, batch), commitment, wrt, dtype)
    assert_same(f"dac codebook, dropout {dropout}", ours(CodebookLoss, batch), codebook, wrt, dtype)


def test_dac_eval_with_fewer_quantizers():
    dtype = torch.float32
    rvq = dac_rvq(dtype).eval()
    z = dac_input(dtype)
    (_, _, _, commitment, codebook), seen = run_dac(rvq, z, n_quantizers=2)
    assert len(seen) == 2
    batch = {"z_e": torch.stack([e for e, _ in seen], 1), "z_q": torch.stack([q for _, q in seen], 1)}
    wrt = [z, *(t for pair in seen for t in pair), *rvq.parameters()]
    assert_same("dac commitment, eval, 2 of 3", ours(CommitmentLoss, batch), commitment, wrt, dtype)
    assert_same("dac codebook, eval, 2 of 3", ours(CodebookLoss, batch), codebook, wrt, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dac_latents_concatenated_with_unequal_codebook_dims(dtype):
    """DAC's own concatenated tensors: the ``latents`` its forward returns (z_e of every stage along channels)
    and the codebook vectors ``from_latents`` looks up for them, read with ``codebook_dims``."""
    dims = [4, 2, 3]
    rvq = dac_rvq(dtype, codebook_dim=dims).train()
    z = dac_input(dtype)
    _, _, latents, commitment, codebook = rvq(z)
    _, z_p, _ = rvq.from_latents(latents)
    assert latents.shape == z_p.shape == (B, sum(dims), T)
    batch = {"z_e": latents, "z_q": z_p}
    wrt = [z, *rvq.parameters()]  # the anchor's losses are taken before the concatenation, so not w.r.t. it
    assert_same("dac commitment, latents", ours(CommitmentLoss, batch, codebook_dims=dims), commitment, wrt, dtype)
    assert_same("dac codebook, latents", ours(CodebookLoss, batch, codebook_dims=dims), codebook, wrt, dtype)


def test_dac_per_stage_losses():
    """Each stage's value, against the per-example losses VectorQuantize.forward returns, averaged over the batch
    as ResidualVectorQuantize.forward averages them."""
    dtype = torch.float64
    rvq = dac_rvq(dtype).train()
    per_stage: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [q.register_forward_hook(lambda m, i, o: per_stage.append((o[1], o[2]))) for q in rvq.quantizers]
    try:
        _, seen = run_dac(rvq, dac_input(dtype))
    finally:
        for h in hooks:
            h.remove()
    batch = {"z_e": torch.stack([e for e, _ in seen], 1), "z_q": torch.stack([q for _, q in seen], 1)}
    for moving, which in (("z_e", 0), ("z_q", 1)):
        got = stage_losses("test", batch, CommitmentConfig(), moving=moving)
        expected = torch.stack([losses[which].mean() for losses in per_stage])
        assert max_diff(got.detach(), expected.detach()) <= TOLERANCE[dtype]


# --- EnCodec (audiocraft) ------------------------------------------------------------------------------------


def run_audiocraft(vq: Any, layers: Any, x: torch.Tensor, **kwargs: Any) -> tuple[Any, list[torch.Tensor], list[Any]]:
    """The anchor's forward, recording each stage's codebook input (z_e, [B, T, D]) and output (z_q, [B, T, D]):
    the two tensors its commitment loss compares."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [layer._codebook.register_forward_hook(lambda m, i, o: seen.append((i[0], o[0]))) for layer in layers]
    try:
        out = vq(x, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return out, [t for pair in seen for t in pair], seen


def stacked(seen: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The recorded channels-last stages as our [B, Q, D, T]."""
    return {
        "z_e": torch.stack([e.transpose(1, 2) for e, _ in seen], 1),
        "z_q": torch.stack([q.transpose(1, 2) for _, q in seen], 1),
    }


def audiocraft_input(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randn(B, DIM, T, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_audiocraft_residual_vector_quantization(dtype):
    """core_vq.py's RVQ with a projection (codebook_dim 4 of 8, so the commitment reaches parameters): each
    stage's loss, and their mean as vq.py takes it, against ``stage_reduction = "mean"``.

    The anchor's loss values are float32 whatever the input's dtype (each starts as ``torch.tensor([0.0])``, a
    float32 tensor with a dimension, which wins the type promotion over the float64 0-dim MSE), and the gradient
    comes back through that float32 sum; so in float64 both agree to float32 rounding only."""
    core_vq, _ = audiocraft_quantization()
    torch.manual_seed(0)
    rvq = core_vq.ResidualVectorQuantization(
        num_quantizers=3, dim=DIM, codebook_size=16, codebook_dim=4, kmeans_init=False
    ).to(dtype)
    rvq.train()
    x = audiocraft_input(dtype)
    (_, _, losses), tensors, seen = run_audiocraft(rvq, rvq.layers, x)
    assert losses.shape == (3, 1) and len(seen) == 3
    batch = stacked(seen)
    wrt = [x, *tensors, *rvq.parameters()]
    assert losses.dtype == torch.float32
    rounded = TOLERANCE[torch.float32]
    for i in range(3):
        per_stage = stage_losses("test", batch, CommitmentConfig(), moving="z_e")[i]
        assert_same(f"audiocraft stage {i}", per_stage, losses[i, 0], wrt, dtype, rounded)
    mean = ours(CommitmentLoss, batch, stage_reduction="mean")
    assert_same("audiocraft mean", mean, losses.mean(), wrt, dtype, rounded)


@pytest.mark.parametrize("q_dropout", [False, True])
def test_audiocraft_residual_vector_quantizer_penalty(q_dropout):
    """vq.py's ResidualVectorQuantizer as EnCodec builds it (k-means init, EMA codebooks, dead-code expiry), its
    ``penalty`` in training mode; with q_dropout it runs the first n_q stages only, and so do we."""
    _, vq = audiocraft_quantization()
    dtype = torch.float32
    torch.manual_seed(3)
    quantizer = vq.ResidualVectorQuantizer(dimension=DIM, n_q=4, bins=16, q_dropout=q_dropout).train()
    x = audiocraft_input(dtype)
    result, tensors, seen = run_audiocraft(quantizer, quantizer.vq.layers, x, frame_rate=50)
    assert len(seen) == (4 if not q_dropout else result.codes.shape[1])
    if q_dropout:
        assert len(seen) < 4, "the seed keeps every stage: choose another"
    wrt = [x, *tensors]
    assert_same(
        f"audiocraft penalty, q_dropout {q_dropout}",
        ours(CommitmentLoss, stacked(seen), stage_reduction="mean"),
        result.penalty,
        wrt,
        dtype,
    )
