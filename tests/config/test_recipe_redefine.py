"""A file's ``[terms.NAME] term = "other"`` redefines a recipe's entry: the instance starts from the new term's
defaults, never from the recipe's options of the term it replaces (issue 36, item 10). A name that is an
installed term's own (the vae recipe's ``kl``) is refused in one line saying what ``term =`` would replace."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distill_core import CombinedLoss, ConfigError, load_config
from distill_core.registry import recipes
from distill_core.registry.discovery import get_registry
from distill_core.registry.recipes import Recipe

STFT = get_registry().get("stft").config_class
KL = get_registry().get("kl").config_class


@pytest.fixture
def prior_recipe(monkeypatch):
    """A recipe whose entry ``prior`` (a name no installed term has) is a KL with options of its own."""
    found = {**recipes.recipes(), "prior_first": Recipe(terms={"prior": {"term": "kl", "free_bits": 0.5}})}
    monkeypatch.setattr(recipes, "_found", found)
    return "prior_first"


def test_a_redefined_recipe_entry_starts_from_the_new_terms_defaults(prior_recipe):
    config = load_config({"recipe": prior_recipe, "terms": {"prior": {"term": "stft"}}})
    assert config.term_of("prior") == "stft"
    assert config.terms["prior"] == STFT()  # stft's defaults; no free_bits of the recipe's KL
    loss = CombinedLoss(config)
    assert list(loss.terms) == ["prior"] and type(loss.terms["prior"].config) is STFT


def test_a_redefined_entry_takes_the_files_options_alone(prior_recipe):
    config = load_config({"recipe": prior_recipe, "terms": {"prior": {"term": "stft", "w_sc": 0.25}}})
    assert config.terms["prior"] == STFT(w_sc=0.25)


@pytest.mark.parametrize("section", [{"weight": 0.1}, {"term": "kl", "weight": 0.1}])
def test_an_entry_of_the_same_term_still_changes_the_recipes_options(prior_recipe, section):
    config = load_config({"recipe": prior_recipe, "terms": {"prior": section}})
    assert config.term_of("prior") == "kl"
    assert config.terms["prior"] == KL(free_bits=0.5, weight=0.1)  # the recipe's free_bits, the file's weight


def test_the_vae_recipes_kl_redefined_as_stft_is_refused_naming_what_it_replaces():
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "vae", "terms": {"kl": {"term": "stft"}}})
    ((where, reason),) = info.value.problems
    assert where == "terms.kl"
    dist = get_registry().get("kl").provenance
    assert reason == (
        f"'kl' is the name of the installed term from {dist}, which term = 'stft' would replace; "
        "name this 'stft' instance differently (e.g. 'stft_kl')"
    )
    assert "free_bits" not in str(info.value)


@pytest.mark.e2e
def test_check_says_the_redefinition_in_one_line_and_a_new_name_is_valid(tmp_path):
    clash = tmp_path / "clash.toml"
    clash.write_text('recipe = "vae"\n\n[terms.kl]\nterm = "stft"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(clash)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    dist = get_registry().get("kl").provenance
    assert line == (
        f"error: invalid loss config in {clash}: terms.kl: 'kl' is the name of the installed term from {dist}, "
        "which term = 'stft' would replace; name this 'stft' instance differently (e.g. 'stft_kl')"
    )
    renamed = tmp_path / "renamed.toml"
    renamed.write_text('recipe = "vae"\n\n[terms.stft_kl]\nterm = "stft"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(renamed)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout and done.stderr == ""
