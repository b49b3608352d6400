"""Mismatch messages are diffs: ``config.diff`` gives one ``path: old -> new`` line per changed leaf, and the
resume refusal, the adversarial term's StateMismatch and the --force-config warning all show its lines, bounded."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from distill_core.config.diff import MISSING, Change, changes, diff_lines, summarize

SMALL_D = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [128, 64], "normalize_input": True}},
]


def test_each_changed_leaf_is_one_line_with_its_dotted_and_indexed_path():
    old = {
        "terms": {
            "adversarial": {"discriminators": [{"kind": "mpd", "options": {"periods": [2, 3]}}], "width": 0.0625},
            "kl": {"weight": 1, "free_bits": 0.1},
        }
    }
    new = {
        "terms": {
            "adversarial": {
                "discriminators": [{"kind": "mpd", "options": {"periods": [2, 3, 5]}}, {"kind": "msd"}],
                "width": 0.125,
            },
            "kl": {"weight": 1.0},
            "stft": {"weight": 2},
        }
    }
    assert diff_lines(old, new) == [
        "terms.adversarial.discriminators[0].options.periods: [2, 3] -> [2, 3, 5]",
        "terms.adversarial.discriminators[1]: added ({'kind': 'msd'})",
        "terms.adversarial.width: 0.0625 -> 0.125",
        "terms.kl.free_bits: removed (was 0.1)",
        "terms.stft: added ({'weight': 2})",
    ]  # kl.weight 1 -> 1.0 is one number: no line


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (1, True, ["value: 1 -> True"]),  # a bool is not the number 1
        ([2, 3], (2, 3), []),  # a TOML array and a Python tuple are one list
        (math.nan, math.nan, []),
        (None, 0, ["value: None -> 0"]),
        ({"a": [{"b": 1}]}, {"a": []}, ["a[0]: removed (was {'b': 1})"]),
        ([{"b": 1}], [{"b": 2}], ["value[0].b: 1 -> 2"]),
    ],
)
def test_what_counts_as_a_change(old, new, expected):
    assert diff_lines(old, new) == expected


def test_values_are_bounded_and_a_summary_says_how_many_more():
    old, new = {"x": list(range(10_000)), "s": "a" * 10_000}, {"x": list(range(10_001)), "s": "b"}
    lines = diff_lines(old, new)
    assert len(lines) == 2 and all(len(line) < 150 for line in lines), lines
    assert changes({"k": 1}, {}) == [Change("k", 1, MISSING)]
    assert (
        summarize([f"k{i}: 0 -> 1" for i in range(7)]) == "k0: 0 -> 1; k1: 0 -> 1; k2: 0 -> 1; k3: 0 -> 1; and 3 more"
    )
    assert summarize(["a", "b"]) == "a; b"


def adversarial_config(discriminators=SMALL_D):
    from distill_core import load_config

    return load_config(
        {
            "recipe": "none",
            "terms": {
                "adversarial": {
                    "preset": "dac",
                    "width": 0.0625,
                    "discriminators": discriminators,
                    "inputs": {"recon": "recon_wave", "target": "target_wave"},
                }
            },
        }
    )


def test_the_resume_refusal_names_the_changed_leaf_not_a_cut_prefix():
    from distill_core import CombinedLoss, converter
    from distill_core.training.resume import loss_changes

    saved = converter.unstructure(adversarial_config())
    wider = [{**SMALL_D[0], "options": {**SMALL_D[0]["options"], "periods": [2, 3, 5]}}, SMALL_D[1]]
    torch.manual_seed(0)
    loss = CombinedLoss(adversarial_config(wider))
    assert loss_changes(saved, {}, loss) == ["terms.adversarial.discriminators[0].options.periods: [2, 3] -> [2, 3, 5]"]


def test_state_mismatch_lists_the_differing_options_saved_to_now():
    from distill_discriminators import Adversarial, AdversarialConfig, StateMismatch

    torch.manual_seed(0)
    saved = Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL_D, width=1 / 16)).state_dict()
    wider = Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL_D, width=1 / 8))
    with pytest.raises(StateMismatch) as e:
        wider.load_state_dict(saved)
    assert str(e.value) == (
        "state: the saved discriminators differ from this config's: discriminators[0].options.width: 0.0625 -> "
        "0.125; discriminators[1].options.width: 0.0625 -> 0.125; load it into an adversarial term configured as "
        "when it was saved"
    )
    assert e.value.changes == [
        "discriminators[0].options.width: 0.0625 -> 0.125",
        "discriminators[1].options.width: 0.0625 -> 0.125",
    ]
    fewer = Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL_D[:1], width=1 / 16))
    with pytest.raises(StateMismatch, match=r"^state: .*: discriminators\[1\]: removed \(was \{'kind': 'mrd'"):
        fewer.load_state_dict(saved)


def test_init_from_keeps_its_advice_to_start_fresh(tmp_path):
    from distill_discriminators import Adversarial, AdversarialConfig, StateMismatch

    torch.manual_seed(0)
    torch.save(Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL_D, width=1 / 16)).state_dict(),
               tmp_path / "d.pt")  # fmt: skip
    other = [{**SMALL_D[0], "options": {**SMALL_D[0]["options"], "periods": [2, 5]}}, SMALL_D[1]]
    with pytest.raises(StateMismatch) as e:
        Adversarial(
            AdversarialConfig(
                preset="dac", discriminators=other, width=1 / 16, init="weights_only", init_from=str(tmp_path / "d.pt")
            )
        )
    assert str(e.value) == (
        f"init_from = {str(tmp_path / 'd.pt')!r}: the saved discriminators differ from this config's: "
        "discriminators[0].options.periods: [2, 3] -> [2, 5]; use the config it was saved with, or init = 'fresh'"
    )


def test_the_forced_config_warning_is_the_diff_and_points_outside_the_library():
    from distill_core import CombinedLoss
    from distill_core.training.loss_state import restore_loss_state

    torch.manual_seed(0)
    saved = {"loss": CombinedLoss(adversarial_config()).state_dict()}
    other = [{**SMALL_D[0], "options": {**SMALL_D[0]["options"], "periods": [2, 5]}}, SMALL_D[1]]
    loss = CombinedLoss(adversarial_config(other))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restore_loss_state(loss, saved, changed=True, source="runs/x/last.pt")
    assert [str(w.message) for w in caught] == [
        "runs/x/last.pt: with the changed loss, these parts start from their built state: 'adversarial' "
        "(discriminators[0].options.periods: [2, 3] -> [2, 5])"
    ]
    assert caught[0].filename == __file__  # this line's caller, never a line of distill_core
