"""Every file a command writes honours the user's umask, as any tool's files do: 0644 under umask 022, 0600 under
077 (issue 36, item 22); the writes stay atomic."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distill_core.files.atomic import atomic_write_bytes, atomic_write_text, current_umask

RUN = Path(__file__).parents[1] / "data" / "seed_run"

# Under each umask given, writes a file atomically, imports the seed run, trains a tiny demo run and plots it, each
# through its real entry point, into a folder of its own (one process: torch is imported once).
COMMANDS = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from click.testing import CliRunner
    from distill_core.cli.main import main
    from distill_core.files.atomic import atomic_write_text
    for umask in sys.argv[3:]:
        os.umask(int(umask, 8))
        out = Path(sys.argv[1]) / umask
        atomic_write_text(out / "plain.txt", "x\\n")
        for args in (
            ["import-seed", sys.argv[2], "--out", str(out / "imported")],
            ["train", "--out", str(out / "runs"), "--epochs", "1", "--clips", "4", "--batch-size", "2",
             "--no-progress", "--no-tensorboard"],
            ["plot", str(out / "runs" / "demo"), "--out", str(out / "plot.png")],
        ):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, (args, result.output, result.exception)
    """
)
UMASKS = {"022": 0o644, "077": 0o600}


def modes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.e2e
def test_every_file_the_commands_write_honours_the_umask(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, str(tmp_path), str(RUN), *UMASKS],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for umask, expected in UMASKS.items():
        found = modes(tmp_path / umask)
        for must in (
            "plain.txt",
            "imported/config.toml",
            "imported/last.pt",
            "imported/history.json",
            "imported/lock.json",
            "imported/seed.json",
            "runs/demo/history.json",
            "runs/demo/last.pt",
            "runs/demo/best.pt",
            "runs/demo/config.toml",
            "runs/demo/lock.json",
            "runs/demo/losses.png",
            "runs/demo/.distill-run.lock",
            "plot.png",
        ):
            assert must in found, sorted(found)
        wrong = {name: oct(mode) for name, mode in found.items() if mode != expected}
        assert not wrong, (umask, wrong)  # samples, the lock file, spectrogram.json: every one


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_an_atomic_write_takes_the_umask_and_leaves_no_temporary(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / "a.txt", "one\n")
        atomic_write_bytes(tmp_path / "a.txt", b"two\n")  # replacing: the new file's mode, the new contents
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == expected
    assert (tmp_path / "a.txt").read_bytes() == b"two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_previous_file_and_its_mode(tmp_path, monkeypatch):
    target = tmp_path / "kept.txt"
    atomic_write_text(target, "before\n")
    mode = stat.S_IMODE(target.stat().st_mode)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="cannot write: No space left on device"):
        atomic_write_text(target, "after\n")
    assert target.read_text() == "before\n" and stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
