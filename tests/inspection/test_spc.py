"""The p-chart: limits that move with each bucket's sample size, and out-of-control points."""

from __future__ import annotations

import math

import pytest

from inspection.spc import p_chart


def test_limits_follow_the_pooled_fraction_and_each_sample_size() -> None:
    # 30 defects in 1,000 frames overall: center 0.03; a 100-frame bucket is allowed more swing than 800.
    counts = [(3, 100), (24, 800), (3, 100)]
    small, large, _ = p_chart(counts)
    assert small is not None and large is not None
    assert small.center == pytest.approx(0.03) and large.center == pytest.approx(0.03)
    assert small.ucl == pytest.approx(0.03 + 3 * math.sqrt(0.03 * 0.97 / 100))
    assert large.ucl == pytest.approx(0.03 + 3 * math.sqrt(0.03 * 0.97 / 800))
    assert small.lcl == 0.0  # clipped: a fraction cannot go below zero
    assert small.ucl > large.ucl
    assert not small.out_of_control and not large.out_of_control


def test_a_burst_of_defects_is_out_of_control_but_the_same_count_in_a_bigger_bucket_is_not() -> None:
    steady = [(5, 500)] * 10
    burst = p_chart([*steady, (20, 100)])
    assert burst[-1] is not None and burst[-1].out_of_control
    assert not any(limit is not None and limit.out_of_control for limit in burst[:-1])
    # 20 defects among 2,000 frames is a fraction of 1 %: inside the limits.
    diluted = p_chart([*steady, (20, 2000)])
    assert diluted[-1] is not None and not diluted[-1].out_of_control


def test_a_drop_below_the_lower_limit_is_flagged_too() -> None:
    # Zero defects in a large bucket on a line that averages 10 % means the camera or model may have stopped.
    limits = p_chart([(100, 1000)] * 5 + [(0, 1000)])
    assert limits[-1] is not None and limits[-1].lcl > 0 and limits[-1].out_of_control


def test_empty_buckets_and_empty_charts_have_no_limits() -> None:
    assert p_chart([]) == []
    assert p_chart([(0, 0), (0, 0)]) == [None, None]
    limits = p_chart([(1, 10), (0, 0)])
    assert limits[0] is not None and limits[1] is None
