"""docs/config.md's separation recipe: SI-SDR and STOI under PIT, trained by the docs' own plain loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_the_docs_loop_separates_a_two_source_mixture(tmp_path, monkeypatch):
    pytest.importorskip("distill_stoi")
    pytest.importorskip("distill_auraloss")
    text = DOC.read_text()
    section = text[text.index("## Permutation-invariant training"):text.index("## Output of CombinedLoss")]
    toml = re.search(r"```toml\n(# separation\.toml.*?)```", section, re.S)
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert toml and code, "docs/config.md lost its separation recipe"
    assert "steps = 300\n" in code.group(1)
    (tmp_path / "separation.toml").write_text(toml.group(1))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.group(1).replace("steps = 300\n", "steps = 20\n"), str(DOC), "exec"), scope)  # noqa: S102
    history = scope["history"]
    assert len(history) == 20
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < first - 8, history  # -SI-SDR in dB plus 10 x (1 - STOI): the separator learns
    assert set(scope["loss"].permutations) == {"auraloss_sisdr", "stoi"}
