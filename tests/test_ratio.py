import math

import pytest

from speechpress.errors import PressError
from speechpress.ratio import fraction_removed_from_ratio, ratio_from_fraction_removed, target_length


@pytest.mark.parametrize(
    "n,ratio,tps,duration,expected",
    [
        (1500, 8, None, None, 188),  # ceil(187.5)
        (1500, 1, None, None, 1500),
        (7, 100, None, None, 1),  # never below one token
        (750, None, 5 / 3, 30.0, 50),  # FastSLM: 1.67 tokens/s -> 50 per 30 s window
        (10, None, 100.0, 1.0, 10),  # never above the input
        (0, 4, None, None, 0),
    ],
)
def test_target_length(n, ratio, tps, duration, expected):
    assert target_length(n, ratio, tps, duration) == expected


def test_conventions_convert_both_ways():
    # kvpress' compression_ratio 0.875 (fraction removed) is 8x; SpeechPrune PR 0.8 is 5x of its input.
    assert ratio_from_fraction_removed(0.875) == 8.0
    assert ratio_from_fraction_removed(0.8) == pytest.approx(5.0)
    assert fraction_removed_from_ratio(4) == 0.75
    assert ratio_from_fraction_removed(fraction_removed_from_ratio(6.0)) == pytest.approx(6.0)


@pytest.mark.parametrize("bad", [0.5, 0, -2, math.nan, math.inf])
def test_impossible_ratios_are_refused(bad):
    with pytest.raises(PressError):
        target_length(100, bad)


def test_bad_targets_are_refused():
    with pytest.raises(PressError, match="not both"):
        target_length(100, 2, 5.0, 10.0)
    with pytest.raises(PressError, match="duration"):
        target_length(100, None, 5.0, None)
    with pytest.raises(PressError, match="positive"):
        target_length(100, None, 0.0, 10.0)
    with pytest.raises(PressError, match=r"\[0, 1\)"):
        ratio_from_fraction_removed(1.0)


@pytest.mark.parametrize("spec", ["+", "avgpool:2+", "+avgpool:2", "avgpool:2++sst:4"])
def test_an_empty_press_name_in_a_chain_is_named_as_such(spec):
    import re

    from speechpress.presses import parse_press_spec

    with pytest.raises(PressError, match=re.escape(f"empty press name in chain '{spec}'")):
        parse_press_spec(spec)
