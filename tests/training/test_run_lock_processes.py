"""The run folder's lock between real processes: one writer at a time, the OS lock taken again by the next ``with``
in the same process (issue 36, item 16), and a lock path that is a folder said as such (item 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.run_lock import LOCK_NAME, LockPathError, RunBusyError, RunFolderLock

# Tries the folder's lock once: exit 0 when it took (and released) it, 3 when another process holds it.
TRY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from distill_core.training.run_lock import RunBusyError, RunFolderLock
    try:
        with RunFolderLock(Path(sys.argv[1])):
            pass
    except RunBusyError as exc:
        print(exc)
        sys.exit(3)
    """
)

# Holds the folder's lock until its stdin closes, after saying so on stdout.
HOLD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from distill_core.training.run_lock import RunFolderLock
    with RunFolderLock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture(autouse=True)
def keep_sigterm():
    """train installs a SIGTERM handler; in-process runs must not leave it behind."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def other_process_takes(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(folder)], capture_output=True, text=True, timeout=120)


def test_a_lock_taken_again_after_a_with_block_holds_the_os_lock(tmp_path):
    with RunFolderLock(tmp_path):
        pass
    assert other_process_takes(tmp_path).returncode == 0  # released at the end of the block
    with RunFolderLock(tmp_path) as again:
        assert again._lock.is_locked
        held = other_process_takes(tmp_path)
        assert held.returncode == 3, held.stderr
        assert f"pid {os.getpid()} on " in held.stdout and "another distill-loss train" in held.stdout
    assert other_process_takes(tmp_path).returncode == 0


def test_a_second_process_cannot_take_the_lock_while_the_first_holds_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match=rf"pid {holder.pid} on .*wait for it to end, or choose another --name"):
            with RunFolderLock(tmp_path):
                pass
        with pytest.raises(RunBusyError):
            RunFolderLock(tmp_path).check_free()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    with RunFolderLock(tmp_path) as lock:  # free again once the holder ended
        assert lock._lock.is_locked


def test_a_lock_path_that_is_a_folder_says_what_it_should_be(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    message = (
        f"{tmp_path / LOCK_NAME}: is a folder; expected the run folder's lock file (an empty file {LOCK_NAME} that "
        "distill-loss train creates and locks while it writes the folder): remove that folder"
    )
    for take in (lambda: RunFolderLock(tmp_path).__enter__(), RunFolderLock(tmp_path).check_free):
        with pytest.raises(LockPathError) as info:
            take()
        assert str(info.value) == message


def test_train_into_a_folder_whose_lock_path_is_a_folder_is_one_line(tmp_path):
    run = tmp_path / "runs" / "demo"
    (run / LOCK_NAME).mkdir(parents=True)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--out",
            str(tmp_path / "runs"),
            "--epochs",
            "1",
            "--clips",
            "4",
            "--batch-size",
            "2",
            "--no-progress",
            "--no-tensorboard",
        ],
    )
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.splitlines() == [
        f"error: {run / LOCK_NAME}: is a folder; expected the run folder's lock "
        f"file (an empty file {LOCK_NAME} that distill-loss train creates and "
        "locks while it writes the folder): remove that folder"
    ]
