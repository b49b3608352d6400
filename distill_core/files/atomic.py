"""Atomic file writes, so a crash mid-save never destroys what was saved before, and a signal never cuts a
group of saves in half."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class WriteError(OSError):
    """A file could not be written (disk full, read-only, a file where a folder should be); names the file."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        code = f" (errno {self.errno})" if self.errno is not None else ""
        return f"{self.path}: cannot write: {self.strerror}{code}; its previous version, if any, is unchanged"


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The nearest of ``folder`` and its ancestors that exists; None when that is a folder (or none exists),
    else that path: a file where a folder must be, so nothing can be written under ``folder``."""
    for path in (Path(folder), *Path(folder).parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the block to end, so a group of saves (checkpoint, history) is never cut
    between two files; the first signal received is then handled as it would have been. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: handler for sig, handler in previous.items() if handler is not None}  # None: not Python's
    for sig in previous:
        signal.signal(sig, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signum, frame = received[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # e.g. KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux's /proc), else set and put back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it: set, then restore at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, flush and fsync it, then rename over ``path``.

    The file gets the permissions any tool's new file gets, 0666 less the umask (0644 under umask 022),
    set on the temporary before it is renamed (mkstemp makes it 0600). Any OSError (disk full, no permission, a
    file where a folder should be) becomes a WriteError naming ``path``; the temporary is removed and the previous
    file, if any, stays as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError:
        blocking = file_in_the_way(target.parent)
        if blocking is not None:  # mkdir says only "File exists"
            exc = NotADirectoryError(errno.ENOTDIR, f"{blocking} is a file, not a folder")
        raise WriteError(target, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise WriteError(target, exc) from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Text flavour of ``atomic_write_bytes`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
