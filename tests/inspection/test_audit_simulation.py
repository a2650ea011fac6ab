"""The kept random streams behind the audit intervals: exact in distribution, the same however they are asked for,
and independent between a group's cells."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from inspection.audit_estimates import AuditCount, audit_estimates, clear_audit_cache
from inspection.audit_simulation import (
    BERNOULLI_ROWS,
    GAMMA_ROWS,
    PRIOR,
    _Rows,
    _share_draws,
    _unaudited_defectives,
    clear_streams,
)


def test_kept_rows_are_the_same_however_they_were_asked_for() -> None:
    piecemeal = _Rows([99, 1], 500, cumulative=True, most=GAMMA_ROWS + 1)
    for count in (2, 3, 9, 40, GAMMA_ROWS + 1):
        piecemeal.upto(count)
    at_once = _Rows([99, 1], 500, cumulative=True, most=GAMMA_ROWS + 1)
    assert np.array_equal(piecemeal.upto(GAMMA_ROWS + 1), at_once.upto(GAMMA_ROWS + 1))
    assert not np.any(at_once.upto(1))  # row 0: the sum of no exponentials


@pytest.mark.parametrize("k, m", [(0, 7), (3, 40), (90, 93), (0, GAMMA_ROWS), (2, 5 * GAMMA_ROWS)])
def test_shares_follow_the_jeffreys_posterior(k: int, m: int) -> None:
    clear_streams()
    draws = _share_draws(k, m, place=1, draws=4000)
    posterior = stats.beta(k + PRIOR, m - k + PRIOR)
    assert stats.kstest(draws, posterior.cdf).pvalue > 0.001


def test_few_unaudited_frames_are_binomial_at_each_share() -> None:
    clear_streams()
    shares = np.full(4000, 0.3)
    for n in (1, 7, BERNOULLI_ROWS):
        counts = _unaudited_defectives(n, shares, k=3, m=10, place=2)
        expected = stats.binom(n, 0.3)
        observed = np.bincount(counts, minlength=n + 1)
        # Pool the tails into bins of at least 5 expected, then a chi-square test of fit.
        probabilities = expected.pmf(np.arange(n + 1))
        keep = probabilities * 4000 >= 5
        chi2 = stats.chisquare(observed[keep], probabilities[keep] / probabilities[keep].sum() * observed[keep].sum())
        assert chi2.pvalue > 0.001, (n, chi2)


HOUR = [
    AuditCount("pass", "pass", 0.02, True, "good", 9),
    AuditCount("pass", "pass", 0.02, True, None, 3),
    AuditCount("pass", "pass", 0.02, False, None, 690),
    AuditCount("defect", "defect", 1.0, True, "crack", 13),
    AuditCount("defect", "defect", 1.0, True, None, 7),
]
OTHER = [
    AuditCount("pass", "pass", 0.1, True, "good", 110),
    AuditCount("pass", "pass", 0.1, False, None, 1200),
    AuditCount("defect", "defect", 1.0, True, "crack", 60),
    AuditCount("defect", "defect", 1.0, True, None, 30),
]


def test_the_same_counts_give_the_same_block_whatever_came_before() -> None:
    clear_audit_cache()
    first = audit_estimates(HOUR, draws=1000)
    clear_audit_cache()  # a restart, or another replica, whose first request was another group
    audit_estimates(OTHER, draws=1000)
    again = audit_estimates(HOUR, draws=1000)
    assert again == first


def test_two_cells_with_the_same_counts_draw_apart() -> None:
    # Two bands of passes with the same counts in one group: their shares must be independent draws, or the
    # escapes' spread would be that of one cell counted twice.
    clear_streams()
    assert not np.array_equal(_share_draws(0, 9, place=0, draws=1000), _share_draws(0, 9, place=1, draws=1000))
