import math

import pytest

from distill_core import Constant, Cosine, Cyclical, LinearWarmup, weight_at
from distill_core.models import get_kl_weight


@pytest.mark.parametrize("epoch,expected", [(0, 0.0), (1, 1 / 3), (2, 2 / 3), (3, 1.0), (9, 1.0)])
def test_linear_warmup_values(epoch, expected):
    # total 10, fraction 0.3 -> int(3.0) = 3 warm-up epochs
    assert weight_at(LinearWarmup(max=1.0, warmup_fraction=0.3), epoch, 10) == pytest.approx(expected)


def test_linear_warmup_without_warmup_epochs_is_max_at_once():
    assert weight_at(LinearWarmup(max=0.01, warmup_fraction=0.05), 0, 10) == 0.01  # int(0.5) == 0


def test_get_kl_weight_is_the_linear_warmup():
    for epoch in range(12):
        assert get_kl_weight(epoch, 12, 0.25, 0.5) == weight_at(LinearWarmup(0.5, 0.25), epoch, 12)
    assert get_kl_weight(1, 10, warmup_fraction=0.3, kl_weight_max=2.0) == pytest.approx(2 / 3)


def test_cosine_endpoints_and_middle():
    s = Cosine(start=1.0, end=0.2)
    assert weight_at(s, 0, 11) == pytest.approx(1.0)
    assert weight_at(s, 5, 11) == pytest.approx(0.6)
    assert weight_at(s, 10, 11) == pytest.approx(0.2)


def test_cyclical_restarts_each_cycle():
    s = Cyclical(max=1.0, cycles=2, ratio=0.5)  # 10 epochs: two cycles of 5, ramp over 2.5 epochs
    values = [weight_at(s, e, 10) for e in range(10)]
    assert values[0] == 0.0 and values[5] == 0.0
    assert values[1] == pytest.approx(0.4) and values[6] == pytest.approx(0.4)
    assert values[3] == 1.0 and values[4] == 1.0


def test_constant_and_float_and_no_progress():
    assert weight_at(0.25, 3, 10) == 0.25
    assert weight_at(Constant(0.5)) == 0.5
    assert weight_at(LinearWarmup(0.3, 0.5)) == 0.3  # no progress given: the end-of-training value
    assert weight_at(Cosine(1.0, 0.1)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearWarmup(max=-1.0),
        lambda: LinearWarmup(max=math.nan),
        lambda: LinearWarmup(warmup_fraction=1.5),
        lambda: Cyclical(cycles=0),
    ],
)
def test_invalid_schedules_are_refused(make):
    with pytest.raises(ValueError):
        make()
