"""Compare trained runs on held-out audio: each run's best checkpoint reconstructs the same WAV clips, and
objective metrics (audio_metrics) score every reconstruction against the original clip.

Writes ``compare.md`` (a table, mean +- standard deviation over clips) and ``compare.png`` (one panel per
metric). Runs are folders written by ``distill-loss train``: the demo VAE's, or the vocoder's (a run folder
with vocoder.json); VAE and vocoder runs can be compared with each other on the VAE's clip length.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import attrs
import tomllib
import torch
from torch import nn

from distill_core.files.atomic import atomic_write_bytes, atomic_write_text, file_in_the_way
from distill_core.training.audio import AudioError, wav_corpus
from distill_core.training.audio_metrics import METRICS, evaluate
from distill_core.training.checkpoint import CheckpointError, load_checkpoint
from distill_core.training.metrics import MetricsHistory
from distill_core.training.model import SpectrogramVAE
from distill_core.training.paired import paired_markdown, paired_tests
from distill_core.training.spectrogram import (
    SpectrogramConfig,
    from_spectrogram,
    load_spectrogram_config,
    to_spectrogram,
)
from distill_core.training.vocoder import VOCODER_FILE, Vocoder, load_vocoder, vocode
from distill_core.util.extras import require

REFERENCE = "spectrogram round trip (no model)"
VOCODER_SECONDS = 1.0  # held-out clip length when only vocoder runs are compared (they take any length)
MAX_SECONDS = 600.0  # --seconds above this is a typo (every run reconstructs every clip in memory)


class CompareError(ValueError):
    """The runs or the output folder cannot be used as given; the message names the path."""


@attrs.define
class TrainedRun:
    """A run folder's best model and what it was trained with (``spectrogram``: the VAE's analysis; a vocoder
    has its own front end in ``model.config``)."""

    path: Path
    label: str
    spectrogram: SpectrogramConfig | None
    model: nn.Module  # a SpectrogramVAE or a Vocoder
    epochs: int
    best_epoch: int | None
    best_val_loss: float
    loss_terms: str


@attrs.define
class Comparison:
    """Per-clip metric values of every run (and of the model-free round trip), on one set of clips."""

    data: Path
    clips: int
    seconds: float
    runs: list[TrainedRun]
    scores: dict[str, dict[str, list[float]]]


def _spectrogram_of(run: Path, model_state: dict[str, torch.Tensor]) -> SpectrogramConfig:
    """The run's analysis settings from spectrogram.json, or, for runs that predate it, from the model's
    shapes (the demo's defaults but for the number of bins, which --mel-bins sets)."""
    saved = run / "spectrogram.json"
    if saved.is_file():
        return load_spectrogram_config(saved)
    default = SpectrogramConfig()
    width = model_state["encoder.0.weight"].shape[0]
    flat = model_state["to_stats.weight"].shape[1]
    bins = flat * 16 // (4 * width * (default.frames // 16))
    return attrs.evolve(default, mel_bins=None if bins == default.n_fft // 2 else bins)


def _loss_terms(run: Path) -> str:
    """The terms and weights of the run's resolved loss config, as one short line for the table."""
    path = run / "config.toml"
    if not path.is_file():
        return "?"
    text = path.read_text(encoding="utf-8")
    terms = tomllib.loads(text).get("terms", {})
    if not terms:  # a run trained without a loss config says what it used in its first comment line
        return next((line.lstrip("# ") for line in text.splitlines() if line.startswith("#")), "none")
    return ", ".join(f"{name} ({_weight(section.get('weight', 1.0))})" for name, section in terms.items())


def _weight(weight: object) -> str:
    """1.0, or a schedule as ``linear_warmup max=0.01 warmup_fraction=0.3``."""
    if isinstance(weight, dict):
        rest = " ".join(f"{k}={v}" for k, v in weight.items() if k != "schedule")
        return f"{weight.get('schedule', '?')} {rest}".strip()
    return str(weight)


def _summary(run: Path, label: str, spectrogram: SpectrogramConfig | None, model: nn.Module) -> TrainedRun:
    """A loaded model with its run's history summary and loss terms."""
    saved = run / "history.json"  # a run without one predates it; a damaged one is an error (HistoryError)
    history = MetricsHistory.load(saved) if saved.exists() else MetricsHistory()
    best = history.best_epoch()
    return TrainedRun(
        path=run,
        label=label,
        spectrogram=spectrogram,
        model=model.eval(),
        epochs=len(history.epochs),
        best_epoch=None if best is None else best.epoch + 1,
        best_val_loss=math.nan if best is None else best.val_loss,
        loss_terms=_loss_terms(run),
    )


def load_run(run: Path, label: str, device: torch.device) -> TrainedRun:
    """The best checkpoint of a run folder in its model (a SpectrogramVAE, or the Vocoder when vocoder.json is
    there), in eval mode, with its history's summary."""
    if not run.is_dir():
        raise CompareError(f"{run}: no such run folder (expected a folder written by distill-loss train)")
    if (run / VOCODER_FILE).is_file():
        return _summary(run, label, None, load_vocoder(run).to(device))
    checkpoint = run / "best.pt"
    state = load_checkpoint(checkpoint)
    weights = state.get("model")
    if isinstance(weights, dict) and "pre.weight" in weights and "ups.0.weight" in weights:
        raise CheckpointError(
            f"{checkpoint}: holds vocoder weights, but {run / VOCODER_FILE} (the vocoder's "
            "settings, written by distill-loss train --model vocoder) is missing"
        )
    if not isinstance(weights, dict) or "to_stats.weight" not in weights:
        raise CheckpointError(f"{checkpoint}: holds no demo SpectrogramVAE weights")
    spec = _spectrogram_of(run, weights)
    latent = weights["to_stats.weight"].shape[0] // 2
    width = weights["encoder.0.weight"].shape[0]
    model = SpectrogramVAE(spec.bins, spec.frames, latent_dim=latent, width=width)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the demo model: {str(exc).splitlines()[0]}") from None
    return _summary(run, label, spec, model.to(device))


def distinct_runs(runs: list[Path]) -> None:
    """Refuse a run folder given twice (by any spelling): it would be compared with itself."""
    seen: dict[Path, Path] = {}
    for run in runs:
        key = run.resolve()
        if key in seen:
            same = f"{run}" if str(run) == str(seen[key]) else f"{seen[key]} and {run}"
            raise CompareError(f"{same}: the same run folder is given twice; expected different runs")
        seen[key] = run


def _labels(runs: list[Path]) -> list[str]:
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def _vae_spectrogram(run: TrainedRun) -> SpectrogramConfig:
    """A VAE run's analysis settings: load_run records them for every run but a vocoder's."""
    assert run.spectrogram is not None, f"{run.path}: a VAE run without its spectrogram settings"
    return run.spectrogram


def _sample_rate(run: TrainedRun) -> int:
    return run.model.config.sample_rate if isinstance(run.model, Vocoder) else _vae_spectrogram(run).sample_rate


@torch.no_grad()
def reconstruct(run: TrainedRun, clips: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Waveform -> the run's model -> waveform, for [N, samples] clips: the vocoder from the clips' log-mel,
    the VAE through the spectrogram (posterior mean)."""
    if isinstance(run.model, Vocoder):
        return vocode(run.model, clips)  # vocode's own batches, as examples/compare_vocoder.py scores
    device = next(run.model.parameters()).device
    spec = _vae_spectrogram(run)
    out = []
    for chunk in clips.split(batch_size):
        recon, _, _ = run.model(to_spectrogram(chunk, spec).to(device))
        out.append(from_spectrogram(recon.float().cpu(), spec))
    return torch.cat(out)


def _clip_samples(loaded: list[TrainedRun], seconds: float | None) -> tuple[int, int]:
    """(sample rate, clip length) every run reconstructs: a VAE's model fixes the length, a vocoder takes
    ``seconds`` (default VOCODER_SECONDS); a CompareError names runs that cannot share clips."""
    first = loaded[0]
    rate = _sample_rate(first)
    for run in loaded[1:]:
        if _sample_rate(run) != rate:
            raise CompareError(
                f"{run.path}: a model at {_sample_rate(run)} Hz, but {first.path} is at {rate} Hz; "
                "expected runs at one sample rate"
            )
    vaes = [run for run in loaded if not isinstance(run.model, Vocoder)]
    if not vaes:
        return rate, round((VOCODER_SECONDS if seconds is None else seconds) * rate)
    fixed = _vae_spectrogram(vaes[0])
    for run in vaes[1:]:
        spec = _vae_spectrogram(run)
        if spec.samples != fixed.samples:
            raise CompareError(
                f"{run.path}: clips of {spec.samples} samples at "
                f"{spec.sample_rate} Hz, but {vaes[0].path} uses {fixed.samples} at "
                f"{fixed.sample_rate} Hz; expected runs with one clip length and rate"
            )
    if seconds is not None and round(seconds * rate) != fixed.samples:
        raise CompareError(
            f"--seconds {seconds}: {vaes[0].path} is a VAE run, whose model takes clips of "
            f"{fixed.samples} samples ({fixed.samples / rate:.3f} s) only; --seconds sets the clip "
            "length of comparisons of vocoder runs alone"
        )
    return rate, fixed.samples


def compare_runs(
    runs: list[Path], data: Path, max_clips: int = 32, device: str = "cpu", seconds: float | None = None
) -> Comparison:
    """Score every run's reconstructions of the first ``max_clips`` clips of ``data`` (the same for all).

    The clips are as long as a VAE run's model takes; with vocoder runs alone, ``seconds`` long (default 1 s).
    VAE runs add the model-free round trip of their spectrogram as a reference row.
    """
    if not runs:
        raise CompareError("no runs given (expected one or more run folders)")
    if seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise CompareError(
            f"--seconds {seconds}: expected a finite clip length above 0 and at most {MAX_SECONDS:g} seconds"
        )
    distinct_runs([Path(r) for r in runs])
    dev = torch.device(device)
    loaded = [load_run(Path(r), label, dev) for r, label in zip(runs, _labels([Path(r) for r in runs]))]
    rate, samples = _clip_samples(loaded, seconds)
    clips = wav_corpus(Path(data), samples, rate, max_clips=max_clips)
    loud = clips.abs().amax(dim=-1) > 1e-4  # silent clips have no spectrum to compare
    if not bool(loud.any()):
        raise AudioError(f"{data}: every clip is silent; expected audio to reconstruct")
    clips = clips[loud]
    scores: dict[str, dict[str, list[float]]] = {}
    round_trips = {_vae_spectrogram(run) for run in loaded if not isinstance(run.model, Vocoder)}
    for spec in sorted(round_trips, key=lambda s: s.bins):
        label = REFERENCE if len(round_trips) == 1 else f"{REFERENCE}, {spec.bins} bins"
        scores[label] = evaluate(clips, from_spectrogram(to_spectrogram(clips, spec), spec), rate)
    for run in loaded:
        scores[run.label] = evaluate(clips, reconstruct(run, clips), rate)
    return Comparison(data=Path(data), clips=clips.shape[0], seconds=samples / rate, runs=loaded, scores=scores)


def _cell(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:  # one clip has no spread to give
        return f"{finite[0]:.3f} (one clip)"
    return f"{statistics.fmean(finite):.3f} ± {statistics.stdev(finite):.3f}"


def markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: what was compared, the metric table, and each run's training summary."""
    header = [f"{name} {'↑' if higher else '↓'}" for name, (_, higher) in METRICS.items()]
    lines = [
        f"# Reconstruction of {comparison.clips} held-out clip{'s' if comparison.clips != 1 else ''} of "
        f"{comparison.seconds:.2f} s from `{comparison.data}`",
        "",
        "Mean ± standard deviation over clips; ↓ lower is better, ↑ higher is better."
        + (
            " The first row inverts each clip's own spectrogram without a model: the ceiling of the representation."
            if any(k.startswith(REFERENCE) for k in comparison.scores)
            else ""
        ),
        "",
        "| run | " + " | ".join(header) + " |",
        "|---" * (len(header) + 1) + "|",
    ]
    for label, values in comparison.scores.items():
        lines.append(f"| {label} | " + " | ".join(_cell(values[name]) for name in METRICS) + " |")
    lines += ["", "| run | folder | epochs | best epoch | best val loss | loss terms (weight) |", "|---" * 6 + "|"]
    for run in comparison.runs:
        lines.append(
            f"| {run.label} | `{run.path}` | {run.epochs} | {run.best_epoch or '?'} | "
            f"{run.best_val_loss:.4g} | {run.loss_terms} |"
        )
    models = {label: values for label, values in comparison.scores.items() if not label.startswith(REFERENCE)}
    lines += ["", paired_markdown(paired_tests(models), {k: higher for k, (_, higher) in METRICS.items()})]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot(comparison: Comparison, path: Path) -> Path:
    """One bar panel per metric, a bar per run with the clips' standard deviation as the error bar."""

    require("matplotlib", "distill-loss compare")
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(comparison.scores)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.6), squeeze=False)
    colors = [f"C{i}" for i in range(len(labels))]
    for ax, (name, (_, higher)) in zip(axes.flat, METRICS.items()):
        series = [[v for v in comparison.scores[label][name] if math.isfinite(v)] for label in labels]
        means = [statistics.fmean(s) if s else math.nan for s in series]
        spreads = [statistics.stdev(s) if len(s) > 1 else 0.0 for s in series]
        ax.bar(range(len(labels)), means, yerr=spreads, color=colors, capsize=3)
        ax.set_title(f"{name} {'↑' if higher else '↓'}", fontsize=10)
        ax.set_xticks([])
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def output_paths(out: Path, force: bool = False) -> tuple[Path, Path]:
    """compare.md and compare.png in ``out``, refused when either exists and ``force`` is not given."""
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise CompareError(
            f"--out {out}: {blocking} is a file, so the folder cannot be created there; "
            "expected a folder for compare.md and compare.png"
        )
    md, png = out / "compare.md", out / "compare.png"
    existing = [str(p) for p in (md, png) if p.exists()]
    if existing and not force:
        raise CompareError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "choose another --out or pass --force to replace"
        )
    return md, png


def write_comparison(comparison: Comparison, out: Path, force: bool = False) -> tuple[Path, Path]:
    """compare.md and compare.png in ``out``; an existing file there is kept unless ``force``."""
    md, png = output_paths(out, force)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, markdown(comparison))
    plot(comparison, png)
    return md, png
