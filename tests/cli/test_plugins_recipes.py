"""``distill-loss plugins`` lists the installed recipes with where they come from and what they weigh (issue 32,
item 6), in its text and under ``recipes`` in ``--json``, from the real installed distributions."""

from __future__ import annotations

import json

from click.testing import CliRunner

from distill_core.cli.main import main


def test_plugins_lists_each_recipe_with_its_distribution_terms_and_weights():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    recipes = {r["name"]: r for r in json.loads(result.output)["recipes"]}
    assert recipes["vae"]["distribution"] == "distill-core"
    dac = recipes["dac"]
    assert (dac["distribution"], dac["entry_point"]) == ("distill-recipes", "distill_recipes.dac:DAC")
    assert {name: t["weight"] for name, t in dac["terms"].items()} == {
        "mel": 15.0,
        "adversarial": 1.0,
        "commitment": 0.25,
        "codebook": 1.0,
    }
    assert dac["terms"]["commitment"]["distribution"] == "distill-quantizer"
    assert set(dac["batch"]) == {"recon", "target", "z_e", "z_q"}

    text = CliRunner().invoke(main, ["plugins"]).output
    assert "dac  (distill-recipes==" in text and "    commitment: weight 0.25, from distill-quantizer" in text
    assert "    hifigan_mel: weight 45.0, from distill-recipes" in text
