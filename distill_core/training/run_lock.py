"""One writer per run folder: an OS file lock held for the whole run, released by the OS if the writer dies.

The lock is ``filelock``'s (``flock`` on POSIX). Beside it, the holder records who it is (pid, host,
start time, command) so that a refused second writer can name it; a holder that died leaves that record
behind, and the next writer to take the lock replaces it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from distill_core.files.atomic import atomic_write_text
from distill_core.util.extras import require

LOCK_NAME = ".distill-run.lock"
OWNER_NAME = ".distill-run.owner.json"
# What train writes into a run folder atomically, only while holding the lock; a temporary of one of these
# (atomic.py's ``.<name>.<8 random characters>.tmp``) found by the next holder was left by a killed save.
LOCKED_WRITES = ("history.json", "last.pt", "best.pt", "config.toml", "lock.json", "spectrogram.json")
_TEMPORARY = re.compile(r"\.({})\.[a-z0-9_]{{8}}\.tmp".format("|".join(map(re.escape, LOCKED_WRITES))))


# Folders this process holds (resolved): ``train()`` inside the CLI's lock re-enters it instead of blocking on
# its own flock (flock locks belong to an open file, so a second open in one process would be refused).
_HELD: set[Path] = set()


class RunBusyError(RuntimeError):
    """Another process is writing the run folder; the message names it (pid, host, since when)."""


class LockPathError(IsADirectoryError):
    """Where the run folder's lock file goes there is a folder; the message says what the path should be."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path}: is a folder; expected the run folder's lock file (an empty file {LOCK_NAME} that "
            "distill-loss train creates and locks while it writes the folder): remove that folder"
        )
        self.path = path


def _holder(folder: Path) -> str:
    """Who holds the folder's lock, in words, from the record it left; what is known if the record is not."""
    try:
        owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner["since"])))
        return f"pid {int(owner['pid'])} on {owner['host']}, since {since}: {owner['command']}"
    except (OSError, ValueError, KeyError, TypeError):  # not yet written by the holder, or not readable
        return "a process that has not recorded itself yet"


class RunFolderLock:
    """``with RunFolderLock(folder):`` holds the folder exclusively or raises RunBusyError at once."""

    def __init__(self, folder: Path) -> None:
        self._filelock = require("filelock", "distill-loss train (its run folder lock)")
        self.folder = Path(folder)
        self._lock = self._filelock.FileLock(str(self.folder / LOCK_NAME), timeout=0)
        self._nested = False

    def _acquire(self) -> None:
        path = self.folder / LOCK_NAME
        if path.is_dir():
            raise LockPathError(path)
        try:
            self._lock.acquire()
        except IsADirectoryError:  # made a folder since the check
            raise LockPathError(path) from None
        except self._filelock.Timeout:
            raise RunBusyError(
                f"{self.folder}: another distill-loss train is writing this run folder "
                f"({_holder(self.folder)}); wait for it to end, or choose another --name"
            ) from None

    def check_free(self) -> None:
        """Raise RunBusyError if a live process holds the folder; write nothing (a folder never locked is free)."""
        if (self.folder / LOCK_NAME).exists():
            self._acquire()
            self._lock.release()

    def __enter__(self) -> RunFolderLock:
        self._nested = self.folder.resolve() in _HELD
        if self._nested:
            return self
        self._acquire()
        try:
            atomic_write_text(
                self.folder / OWNER_NAME,
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "since": time.time(),
                        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                    }
                )
                + "\n",
            )
        except BaseException:
            self._lock.release()
            raise
        _HELD.add(self.folder.resolve())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._nested:
            return
        _HELD.discard(self.folder.resolve())
        try:
            (self.folder / OWNER_NAME).unlink(missing_ok=True)
        finally:
            self._lock.release()

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the temporaries of saves that a killed holder left (only ours, found while we hold the lock:
        no live writer can own them); return their names."""
        assert self._lock.is_locked or self._nested, "only the lock's holder may remove temporaries"
        removed = []
        for path in sorted(self.folder.iterdir()):
            if _TEMPORARY.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed
