"""Train the small mel-to-waveform vocoder once per loss recipe (same model, data, steps and seed), then
reconstruct held-out speech with every run and say which differences are real (paired tests over clips).

    python examples/make_speech_corpus.py --out data/speech
    python examples/compare_vocoder.py --corpus data/speech --out runs/vocoder --threads 1

Recipes: (a) waveform L1, (b) multi-resolution STFT, (c) DAC's multi-scale mel, (d) mel + multi-resolution
STFT, (e) mel + adversarial, (f) BigVGAN-v2's whole loss, ``recipe = "bigvgan_v2"`` at 16 kHz and a small width
(see RECIPES). Each run is a folder under
``--out`` (best.pt, last.pt, config.toml, lock.json, vocoder.json, history.json, losses.png); the evaluation
writes ``--out/compare/``: compare.md (the metric table and the paired tests), compare.png, spectrograms.png
(one held-out clip per recipe beside the original) and the reconstructed WAVs.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import tomllib
import torch
from torch.utils.data import DataLoader

from distill_core import CombinedLoss, LossConfig, load_config
from distill_core.files.atomic import atomic_write_text
from distill_core.loss.config import dumps_config
from distill_core.loss.lockfile import write_lock
from distill_core.training.audio import wav_corpus, write_wav
from distill_core.training.audio_metrics import evaluate
from distill_core.training.checkpoint import save_checkpoint
from distill_core.training.compare import Comparison, TrainedRun, write_comparison
from distill_core.training.metrics import EpochMetrics, MetricsHistory, overfitting_gap
from distill_core.training.plots import plot_losses, spectrogram_figure
from distill_core.training.run import RUN_FILES
from distill_core.training.segments import WavSegments
from distill_core.training.spectrogram import SpectrogramConfig
from distill_core.training.vocoder import (
    Vocoder,
    VocoderConfig,
    load_vocoder,
    save_vocoder_config,
    vocode,
    vocoder_batch,
)

SAMPLE_RATE = 16_000
WAVES = {"inputs": {"recon": "recon_wave", "target": "target_wave"}}  # every term reads the vocoder's waveforms
MRSTFT = {"input": "waveform", **WAVES}  # distill-stft's defaults: FFT sizes 512/1024/2048, hops 128/256/512
MEL = {"sample_rate": 16_000, **WAVES}  # distill-mel's defaults are DAC's: seven scales, windows 32 to 2048
MPD = {"kind": "mpd", "options": {"periods": [2, 3, 5, 7, 11], "always_pad": True, "normalize_input": True}}
ADVERSARIAL = {"preset": "dac", "discriminators": [MPD], "width": 0.0625, **WAVES}  # LSGAN, AdamW 1e-4 (0.8, 0.99)

#: recipe name -> loss config (recipe = "none": only these terms). Weights 1.0: each term as its plugin defines it.
RECIPES: dict[str, dict[str, Any]] = {
    "a_wave_l1": {"recipe": "none", "terms": {"wave_l1": WAVES}},
    "b_mrstft": {"recipe": "none", "terms": {"stft": MRSTFT}},
    "c_mel": {"recipe": "none", "terms": {"mel": MEL}},
    "d_mel_mrstft": {"recipe": "none", "terms": {"mel": MEL, "stft": MRSTFT}},
    # (e) DAC's weights (mel 15, adversarial 1, feature matching 2) with a small MPD (DAC's and HiFi-GAN's periods,
    # 1/16 of their channels: 163k parameters) so that a step costs about twice a step of (c) on CPU, not 10x.
    "e_mel_adversarial": {"recipe": "none", "terms": {"mel": {**MEL, "weight": 15.0}, "adversarial": ADVERSARIAL}},
    # (f) BigVGAN-v2's loss as its recipe gives it (mel x15; MPD + MS-SB-CQTD, LSGAN, feature matching x2, D's AdamW,
    # per-step decay, clip 500 per discriminator), on this corpus's 16 kHz: the mel's and the CQT's sample rate,
    # and 8 octaves from C1 (9 would pass 16 kHz's Nyquist after the 2x upsampling). Width 1/16 as (e): MPD at
    # 1/16 of its channels and the CQTD at 8 of its 128 filters.
    "f_bigvgan_v2": {
        "recipe": "bigvgan_v2",
        "terms": {
            "mel": {"sample_rate": SAMPLE_RATE, **WAVES},
            "adversarial": {
                "width": 0.0625,
                "discriminators": [
                    {"kind": "mpd"},
                    {"kind": "cqtd", "options": {"sample_rate": SAMPLE_RATE, "n_octaves": [8, 8, 8]}},
                ],
                **WAVES,
            },
        },
    },
}


def _loss_config(recipe: dict[str, Any]) -> LossConfig:
    return load_config(copy.deepcopy(recipe))


def _validate(model: Vocoder, loss: CombinedLoss, val: torch.Tensor) -> dict[str, float]:
    """The loss on fixed segments; a stateful term (a discriminator) is logged but weighs 0 in the total, which
    picks best.pt: its value moves with its own training, so it is no measure of the model."""
    model.eval()
    loss.eval()
    with torch.no_grad():
        out = loss(vocoder_batch(model, val), weights={name: 0.0 for name in loss.stateful})
    model.train()
    loss.train()
    return {k: float(v) for k, v in out.items() if k.endswith("_loss")}


def train_recipe(
    name: str,
    recipe: dict[str, Any],
    corpus: Path,
    out: Path,
    steps: int,
    seed: int,
    batch_size: int,
    segment: int,
    lr: float,
    rounds: int,
) -> Path:
    """One run folder: the vocoder trained ``steps`` Adam steps on random training segments with this recipe.

    Every ``steps // rounds`` steps the loss on fixed segments of the training voices (another seed) is
    recorded as an epoch of history.json; best.pt keeps the model of the lowest such loss.
    """
    torch.manual_seed(seed)
    config = _loss_config(recipe)
    loss = CombinedLoss(config)
    model = Vocoder(VocoderConfig())
    data = WavSegments(corpus / "train", segment, SAMPLE_RATE, count=steps * batch_size, seed=seed)
    val_segments = WavSegments(corpus / "train", segment, SAMPLE_RATE, count=8, seed=seed + 1)
    val = torch.stack([val_segments[i] for i in range(len(val_segments))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.8, 0.99))
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    versions = ", ".join(f"{n} = {p}" for n, p in loss.provenance.items())
    atomic_write_text(
        run / "config.toml",
        f"# resolved loss config of recipe {name}; plugins: {versions}\n" + dumps_config(config, ".toml"),
    )
    write_lock(run / "lock.json", loss)
    save_vocoder_config(model.config, run / "vocoder.json")

    history, best = MetricsHistory(), math.inf
    per_round = max(1, steps // rounds)
    sums: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for step, wave in enumerate(DataLoader(data, batch_size=batch_size), start=1):
        batch = vocoder_batch(model, wave)
        figures = loss.update(batch)  # a stateful term's own step (D's), before the generator's loss; else nothing
        result = {**loss(batch), **figures}
        optimizer.zero_grad(set_to_none=True)
        loss.backward(result)
        optimizer.step()
        for key, value in result.items():  # summed on the device, read once per round
            if key.endswith("_loss"):
                sums[key] = sums.get(key, 0) + value.detach()
        if step % per_round and step != steps:
            continue
        count = step - len(history.epochs) * per_round
        train_terms = {k: float(v) / count for k, v in sums.items()}
        val_terms = _validate(model, loss, val)
        sums = {}
        epoch = len(history.epochs)
        elapsed = time.perf_counter() - started
        history.add_epoch(
            EpochMetrics(
                epoch=epoch,
                total_epochs=math.ceil(steps / per_round),
                train_loss=train_terms["total_loss"],
                val_loss=val_terms["total_loss"],
                val_recon_loss=val_terms["total_loss"],
                val_kl_loss=0.0,
                kl_divergence=0.0,
                overfitting_gap=overfitting_gap(train_terms["total_loss"], val_terms["total_loss"]),
                learning_rate=lr,
                eta_seconds=elapsed / step * (steps - step),
                elapsed_seconds=elapsed,
                components={k: v for k, v in train_terms.items() if k != "total_loss"},
                val_components={k: v for k, v in val_terms.items() if k != "total_loss"},
            )
        )
        state = {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history.to_dict(),
            **({"loss": loss.state_dict()} if loss.stateful else {}),
        }
        save_checkpoint(run / "last.pt", state)
        if val_terms["total_loss"] < best:
            best = val_terms["total_loss"]
            save_checkpoint(run / "best.pt", state)
        history.save(run / "history.json")
        print(
            f"{name}: step {step}/{steps}  train {train_terms['total_loss']:.4f}  val {best:.4f} (best)  "
            f"{elapsed:.0f} s",
            flush=True,
        )
    plot_losses(history, run / "losses.png")
    return run


def _trained_run(run: Path, model: Vocoder) -> TrainedRun:
    """The run's summary for compare's table (compare loads VAE runs itself; a vocoder run is loaded here)."""
    history = MetricsHistory.load(run / "history.json")
    best = history.best_epoch()
    terms = tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))["terms"]
    return TrainedRun(
        path=run,
        label=run.name,
        spectrogram=SpectrogramConfig(sample_rate=SAMPLE_RATE),
        model=model,
        epochs=len(history.epochs),
        best_epoch=None if best is None else best.epoch + 1,
        best_val_loss=math.nan if best is None else best.val_loss,
        loss_terms=", ".join(f"{name} ({section['weight']})" for name, section in terms.items()),
    )


def evaluate_runs(
    runs: list[Path], held_out: Path, out: Path, clip_seconds: float, max_clips: int, figure_clip: int = 0
) -> Comparison:
    """compare's metrics on the held-out clips for every run, the paired tests (in compare.md), the
    spectrogram figure of one clip and every run's reconstructions of the first clips as WAVs."""
    samples = round(clip_seconds * SAMPLE_RATE)
    clips = wav_corpus(held_out, samples, SAMPLE_RATE, max_clips=max_clips)
    clips = clips[clips.abs().amax(dim=-1) > 1e-4]
    models = {run: load_vocoder(run) for run in runs}
    recons = {run.name: vocode(model, clips) for run, model in models.items()}
    scores = {name: evaluate(clips, recon, SAMPLE_RATE) for name, recon in recons.items()}
    comparison = Comparison(
        data=held_out,
        clips=clips.shape[0],
        seconds=samples / SAMPLE_RATE,
        runs=[_trained_run(run, model) for run, model in models.items()],
        scores=scores,
    )
    write_comparison(comparison, out, force=True)
    figure_clip = min(figure_clip, clips.shape[0] - 1)
    spectrogram_figure(
        clips[figure_clip],
        {name: r[figure_clip] for name, r in recons.items()},
        SAMPLE_RATE,
        out / "spectrograms.png",
        title=f"held-out clip {figure_clip} of {held_out}",
    )
    for i in range(min(4, clips.shape[0])):
        write_wav(out / "wavs" / f"clip{i:02d}_original.wav", clips[i], SAMPLE_RATE)
        for name, recon in recons.items():
            write_wav(out / "wavs" / f"clip{i:02d}_{name}.wav", recon[i], SAMPLE_RATE)
    return comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path("data/speech"),
        help="folder with train/ and held_out/ (examples/make_speech_corpus.py writes it)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/vocoder"))
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=int, default=8192, help="training segment length in samples")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rounds", type=int, default=10, help="validation points (history epochs) per run")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="held-out clip length")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips at most")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--overwrite", action="store_true", help="replace runs and a comparison already in --out")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="train nothing: compare the runs of --recipes already in --out (e.g. trained apart)",
    )
    args = parser.parse_args(argv)
    for folder in (args.corpus / "train", args.corpus / "held_out"):
        if not folder.is_dir():
            print(
                f"error: {folder}: no such folder; make the corpus first: python examples/make_speech_corpus.py "
                f"--out {args.corpus}",
                file=sys.stderr,
            )
            return 2
    hop = VocoderConfig().hop
    bad = [
        f"--{flag} {value}"
        for flag, value in (
            ("steps", args.steps),
            ("batch-size", args.batch_size),
            ("rounds", args.rounds),
            ("clips", args.clips),
        )
        if value < 1
    ]
    bad += [f"--segment {args.segment}"] if args.segment < hop or args.segment % hop else []
    bad += [f"--clip-seconds {args.clip_seconds}"] if not args.clip_seconds > 0 else []
    if bad:
        print(
            f"error: {', '.join(bad)}: expected --steps, --batch-size, --rounds and --clips >= 1, --segment a "
            f"multiple of the hop ({hop}) and --clip-seconds > 0",
            file=sys.stderr,
        )
        return 2
    if args.evaluate_only:
        missing = [str(p) for p in (args.out / name / "best.pt" for name in args.recipes) if not p.is_file()]
        if missing:
            print(
                f"error: --evaluate-only: no trained run at {', '.join(missing)}; train those recipes first",
                file=sys.stderr,
            )
            return 2
        return _evaluate_and_print([args.out / name for name in args.recipes], args)
    existing = [str(p) for name in args.recipes for p in (args.out / name / f for f in RUN_FILES) if p.exists()]
    existing += [str(p) for p in [args.out / "compare" / "compare.md"] if p.exists()]
    if existing and not args.overwrite:
        print(
            f"error: {args.out} already holds results ({', '.join(existing[:3])}"
            f"{', ...' if len(existing) > 3 else ''}); choose another --out or pass --overwrite to replace them",
            file=sys.stderr,
        )
        return 2
    for name in args.recipes if args.overwrite else []:  # a run folder never mixes two runs' files
        for f in RUN_FILES:
            (args.out / name / f).unlink(missing_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [
        train_recipe(
            name,
            RECIPES[name],
            args.corpus,
            args.out,
            args.steps,
            args.seed,
            args.batch_size,
            args.segment,
            args.lr,
            args.rounds,
        )
        for name in args.recipes
    ]
    return _evaluate_and_print(runs, args)


def _evaluate_and_print(runs: list[Path], args: argparse.Namespace) -> int:
    evaluate_runs(runs, args.corpus / "held_out", args.out / "compare", args.clip_seconds, args.clips)
    print((args.out / "compare" / "compare.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
