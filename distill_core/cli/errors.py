"""The errors a user can cause, as the CLI shows them: one line and exit 2, unless --debug asks for the traceback."""

from __future__ import annotations

from typing import Any

import click

EXIT_USAGE = 2


class UserError(click.ClickException):
    """An error the user caused: one line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import ConfigError
    from distill_core.files.atomic import WriteError
    from distill_core.loss.combined import TermBuildError
    from distill_core.loss.lockfile import LockError
    from distill_core.registry.discovery import PluginError, UnknownTermError
    from distill_core.terms.base import BatchError
    from distill_core.training.audio import AudioError
    from distill_core.training.checkpoint import CheckpointError
    from distill_core.training.compare import CompareError
    from distill_core.training.metrics import HistoryError
    from distill_core.training.run import NothingTrainedError, RunExistsError, SettingsError
    from distill_core.training.run_lock import RunBusyError
    from distill_core.util.extras import MissingExtra

    return (
        ConfigError,
        UnknownTermError,
        PluginError,
        TermBuildError,
        BatchError,
        AudioError,
        CheckpointError,
        HistoryError,
        LockError,
        MissingExtra,
        CompareError,
        RunExistsError,
        SettingsError,
        RunBusyError,
        NothingTrainedError,
        WriteError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
    )


def _one_line(exc: BaseException) -> str:
    """A user error's message on one line (a config's several problems joined with '; ')."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import ConfigError

    if isinstance(exc, ConfigError):
        return exc.one_line()
    return " ".join(str(exc).split("\n"))


class Group(click.Group):
    """Turns user errors into one line and exit 2, unless --debug asks for the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _user_errors() as exc:
            if ctx.params.get("debug"):
                raise
            raise UserError(_one_line(exc)) from None
