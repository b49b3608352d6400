"""What ``distill-loss train`` prints: the progress bar's figures for a logged step and the line per epoch, each
term's value next to the loss's update-step figures (a discriminator's loss and its real/fake scores).

On a terminal the run draws a progress bar (tqdm). Anywhere else (CI, ``nohup``, ``| tee``, a log file) a bar
would write a line per refresh, so the run prints one plain line per epoch instead; with the environment variable
``DISTILL_PROGRESS_SECONDS=N`` it also prints a plain step line at most every N seconds.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import IO, Any

from distill_core.training.metrics import EpochMetrics, StepMetrics

__all__ = ["EVERY_ENV", "ConsoleProgress", "console_values", "epoch_line", "progress_display", "step_line"]

EVERY_ENV = "DISTILL_PROGRESS_SECONDS"  # on a non-terminal: a step line at most every this many seconds


def _short(key: str) -> str:
    return key.removesuffix("_loss")


def console_values(metrics: StepMetrics) -> dict[str, float]:
    """A logged step's figures by short name: each component (``stft``), then each update figure
    (``adversarial_disc``, ``adversarial_real_score``)."""
    return {
        **{_short(k): v for k, v in metrics.components.items()},
        **{_short(k): v for k, v in metrics.metrics.items()},
    }


def epoch_line(metrics: EpochMetrics) -> str:
    """``epoch 2/20: train 1.2345  val 1.3456  (stft 0.512, ...)  update: adversarial_disc 0.498, ...``"""
    terms = ", ".join(f"{_short(k)} {v:.3f}" for k, v in metrics.val_components.items())
    line = (
        f"epoch {metrics.epoch + 1}/{metrics.total_epochs}: train {metrics.train_loss:.4f}  "
        f"val {metrics.val_loss:.4f}  ({terms})"
    )
    if metrics.metrics:
        line += "  update: " + ", ".join(f"{_short(k)} {v:.3f}" for k, v in metrics.metrics.items())
    return line


def step_line(metrics: StepMetrics) -> str:
    """``epoch 1 step 4/7: total 1.23, stft 0.512, ...``: a logged step as one plain line."""
    shown = {"total": metrics.train_loss, **console_values(metrics)}
    figures = ", ".join(f"{k} {v:.3g}" for k, v in shown.items())
    return f"epoch {metrics.epoch + 1} step {metrics.step + 1}/{metrics.total_steps}: {figures}"


def _every_from_env() -> float | None:
    """``DISTILL_PROGRESS_SECONDS`` as seconds, None when unset; a value that is no positive number is warned of
    (naming it) and ignored: a display setting never stops a run."""
    raw = os.environ.get(EVERY_ENV, "").strip()
    if not raw:
        return None
    try:
        every = float(raw)
    except ValueError:
        every = math.nan
    if not (math.isfinite(every) and every > 0):
        warnings.warn(f"{EVERY_ENV}={raw!r}: expected a number of seconds above 0 (or unset); ignored", stacklevel=3)
        return None
    return every


class ConsoleProgress:
    """A run's console output, one call per logged step or finished epoch: a tqdm bar on a terminal; elsewhere
    one plain line per epoch, and a step line at most every ``every`` seconds when ``every`` is given.

    ``stream`` is where the bar (or its stand-in) goes, stderr by default, and whether it is a terminal decides
    which; epoch lines go to ``lines`` (stdout by default) either way. ``enabled=False`` shows epoch lines only.
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        *,
        stream: IO[str] | None = None,
        lines: IO[str] | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.lines = lines
        self.every = every if every is not None else _every_from_env()
        self.clock = clock
        self.terminal = enabled and _is_terminal(self.stream)
        self.enabled = enabled
        self._last_line = -math.inf
        self._step = 0
        self._bar: Any = None
        if self.terminal:
            from distill_core.util.extras import require  # tqdm is an extra, wanted only on a terminal

            tqdm = require("tqdm.auto", "distill-loss train").tqdm
            self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=self.stream)

    def __call__(self, metrics: StepMetrics | EpochMetrics) -> None:
        if isinstance(metrics, StepMetrics):
            self._on_step(metrics)
        else:
            self._write(epoch_line(metrics))

    def _on_step(self, metrics: StepMetrics) -> None:
        if self._bar is not None:
            shown = {"total": metrics.train_loss, **console_values(metrics)}
            self._bar.set_description(f"epoch {metrics.epoch + 1}")
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            done = metrics.step + 1  # steps are counted from 0, as the seed counts them
            self._bar.update(done - self._step)
            self._step = 0 if done >= metrics.total_steps else done
        elif self.enabled and self.every is not None:
            now = self.clock()
            if now - self._last_line >= self.every:
                self._last_line = now
                print(step_line(metrics), file=self.stream, flush=True)

    def _write(self, line: str) -> None:
        lines = self.lines if self.lines is not None else sys.stdout
        if self._bar is not None:
            self._bar.write(line, file=lines)
        else:
            print(line, file=lines, flush=True)

    def close(self) -> None:
        """End the bar, if one is drawn."""
        if self._bar is not None:
            self._bar.close()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def progress_display(total: int, enabled: bool) -> tuple[ConsoleProgress, Callable[[StepMetrics | EpochMetrics], None]]:
    """(what to close, the callback): a run's console output for ``total`` steps, as ``train_demo_run`` uses it."""
    display = ConsoleProgress(total, enabled)
    return display, display
