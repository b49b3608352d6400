"""docs/config.md's separation recipe: SI-SDR and STOI under PIT, trained by the docs' own plain loop."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_the_docs_loop_separates_a_two_source_mixture(config_doc_loop):
    pytest.importorskip("distill_stoi")
    pytest.importorskip("distill_auraloss")
    scope = config_doc_loop(
        "## Permutation-invariant training",
        "## Output of CombinedLoss",
        "separation.toml",
        300,
        20,
        "separation recipe",
    )
    history = scope["history"]
    assert len(history) == 20
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < first - 8, history  # -SI-SDR in dB plus 10 x (1 - STOI): the separator learns
    assert set(scope["loss"].permutations) == {"auraloss_sisdr", "stoi"}
