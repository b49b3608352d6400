"""The weight schedules' edges that `make mutate` found unpinned (issue 36): no progress given (either part),
a two-epoch cosine, epochs past the end, cyclical periods under one epoch, ratios 0 and 1, zero epochs, and the
validators' message."""

from __future__ import annotations

import math

import pytest

from distill_core.config.schedules import Constant, Cosine, Cyclical, LinearWarmup


@pytest.mark.parametrize("epoch, total", [(None, None), (3, None), (None, 10)])
def test_a_schedule_without_its_progress_gives_its_end_value(epoch, total):
    assert LinearWarmup(max=2.0).at(epoch, total) == 2.0
    assert Cosine(start=1.0, end=0.25).at(epoch, total) == 0.25
    assert Cyclical(max=3.0).at(epoch, total) == 3.0


def test_a_two_epoch_cosine_ends_at_its_second_epoch():
    assert Cosine(start=1.0, end=0.0).at(0, 2) == 1.0
    assert Cosine(start=1.0, end=0.0).at(1, 2) == 0.0


def test_a_cosine_past_its_last_epoch_stays_at_its_end():
    assert Cosine(start=1.0, end=0.5).at(20, 10) == 0.5


def test_cyclical_periods_shorter_than_an_epoch_restart_every_epoch():
    # 2 epochs in 4 cycles: a period of half an epoch, so every epoch starts a cycle (phase 0)
    assert Cyclical(max=1.0, cycles=4, ratio=0.5).at(1, 2) == 0.0


def test_cyclical_with_no_epochs_is_at_its_max():
    assert Cyclical(max=2.0, cycles=2, ratio=0.5).at(0, 0) == 2.0


def test_cyclical_ratio_0_is_max_at_once_and_ratio_1_ramps_over_the_whole_cycle():
    assert Cyclical(max=2.0, cycles=1, ratio=0.0).at(0, 8) == 2.0
    assert Cyclical(max=2.0, cycles=1, ratio=1.0).at(2, 8) == pytest.approx(0.5)


@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan])
def test_a_weight_out_of_range_names_the_field_and_the_value(value):
    with pytest.raises(ValueError) as info:
        Constant(value=value)
    assert str(info.value) == f"value: expected a finite number >= 0, got {value!r}"


def test_a_fraction_or_a_start_out_of_range_names_the_field_and_the_value():
    from distill_core.config.schedules import UpdateSchedule

    with pytest.raises(ValueError) as info:
        LinearWarmup(warmup_fraction=1.5)
    assert str(info.value) == "warmup_fraction: expected 0 <= warmup_fraction <= 1, got 1.5"
    with pytest.raises(ValueError) as info:
        UpdateSchedule(start=-1)
    assert str(info.value) == "start: expected an int >= 0, got -1"
