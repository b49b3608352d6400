"""The run lock's edges that `make mutate` found unpinned (issue 36): the holder's record (its command, its start
time in a refusal), a holder that has not recorded itself, an owner record already gone at exit, which
temporaries a new holder removes, and the error's path. Second processes are real ones."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill_core.training.run_lock import LOCK_NAME, OWNER_NAME, LockPathError, RunBusyError, RunFolderLock

HOLD = """
import sys, time
from pathlib import Path
from distill_core.training.run_lock import RunFolderLock
with RunFolderLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    """A second process holding tmp_path's lock, started as `python -c HOLD <folder> --flag value`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), "--flag", "value"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_the_holder_records_its_command_and_a_refusal_names_it_with_its_start(tmp_path, held):
    owner = json.loads((tmp_path / OWNER_NAME).read_text(encoding="utf-8"))
    assert owner["command"] == f"-c {tmp_path} --flag value"  # argv[0] is '-c' under python -c
    assert owner["pid"] == held.pid
    assert abs(owner["since"] - time.time()) < 300
    owner["since"] = 86400.0 * 365  # a start long ago: the refusal says when, not now
    (tmp_path / OWNER_NAME).write_text(json.dumps(owner), encoding="utf-8")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["since"]))
    assert since.startswith("1971-01-0")
    with pytest.raises(RunBusyError) as info:
        with RunFolderLock(tmp_path):
            pass
    assert f"(pid {held.pid} on {owner['host']}, since {since}: -c {tmp_path} --flag value)" in str(info.value)


def test_a_holder_that_has_not_recorded_itself_is_said_so(tmp_path, held):
    (tmp_path / OWNER_NAME).unlink()
    with pytest.raises(RunBusyError, match=r"\(a process that has not recorded itself yet\)"):
        RunFolderLock(tmp_path).check_free()


def test_an_owner_record_already_gone_at_exit_is_no_error(tmp_path):
    with RunFolderLock(tmp_path):
        (tmp_path / OWNER_NAME).unlink()
    with RunFolderLock(tmp_path):  # released: taken again
        assert (tmp_path / OWNER_NAME).is_file()


def test_a_new_holder_removes_exactly_the_killed_saves_temporaries(tmp_path):
    stale = [".history.json.ab12cd34.tmp", ".last.pt.0123abcd.tmp"]
    kept = [".history.json.ab12cd34.tmp.bak", ".notes.txt.ab12cd34.tmp", "history.json", ".best.pt.short.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".config.toml.abcdefgh.tmp").mkdir()  # a folder of that name is not a save's temporary
    with RunFolderLock(tmp_path) as lock:
        assert lock.remove_stale_temporaries() == sorted(stale)
        assert lock.remove_stale_temporaries() == []
    left = {p.name for p in tmp_path.iterdir()} - {LOCK_NAME}
    assert left == set(kept) | {".config.toml.abcdefgh.tmp"}


def test_a_folder_where_the_lock_goes_names_its_path(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(LockPathError) as info:
        with RunFolderLock(tmp_path):
            pass
    assert info.value.path == Path(tmp_path / LOCK_NAME)


def test_only_the_holder_may_remove_temporaries(tmp_path):
    (tmp_path / ".last.pt.0123abcd.tmp").write_text("x")
    with pytest.raises(AssertionError) as info:
        RunFolderLock(tmp_path).remove_stale_temporaries()
    # the first line: under pytest's assertion rewriting (a plugin's package) the explanation follows it
    assert str(info.value).splitlines()[0] == "only the lock's holder may remove temporaries"
    assert (tmp_path / ".last.pt.0123abcd.tmp").is_file()
