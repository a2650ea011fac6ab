"""The simulation behind the audit estimates' 95 % intervals (inspection.audit_estimates).

Per design cell, the defective share is drawn from its Jeffreys posterior Beta(k + 1/2, m - k + 1/2) (k defective
among m audited) and the defects among the cell's n unaudited frames from a binomial at that share.

The draws are common random numbers, kept per place (a cell's index among its group's sorted cells) and number of
draws, each from a stream seeded by what it is, never by a clock:
- Beta(a, b) is X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b) independent, and Gamma(k + 1/2) is a sum of k standard
  exponentials plus Z^2 / 2 for a standard normal Z. Two kept tables of cumulative sums of exponentials (one for X,
  one for Y) and two kept rows of Z^2 / 2 make any share a table row plus a row, four array operations.
- Binomial(n, share) is the number of n kept uniform rows below the share; where a rounded normal stands in for it,
  its normals are a kept row too.
So the same counts give the same interval on every refresh and every replica; within a group the cells' draws are
independent (each place its own streams), which is all an interval needs; and a chart's 168 buckets cost a few
array operations each instead of fresh gamma and binomial draws, which were most of an hourly chart's first
request (docs/scale.md). Two groups whose counts match share their draws' Monte Carlo error, so an uneven table
would move their band ends alike: every kept row but the exponential tables is a stratified sample, which fills
its distribution evenly (the coverage checks in decision 0014 fell short without it). Counts beyond the tables (a
month's totals) draw afresh, from a stream seeded by them.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from inspection.audit import DEFECT_STRATUM

PRIOR = 0.5  # Jeffreys: both shapes of a share's posterior are whole numbers plus this
NORMAL_FROM = 20  # unaudited frames per audited one from which a cell's binomial draw is a normal one
GAMMA_ROWS = 128  # largest whole part of a gamma shape read from a table (k or m - k audited frames)
BERNOULLI_ROWS = 64  # most unaudited frames counted against kept uniform rows
# First words of the streams' seeds, so that no two streams share a seed.
_SUMS_X, _SUMS_Y, _HALVES, _UNIFORMS, _NORMALS, _FRESH_SHARES, _FRESH_BINOMIAL = range(1, 8)

CellKey = tuple[str, str, float]  # verdict, audit stratum, audit probability


@dataclass
class DesignCell:
    """One design cell's counts: rows, selected, audited (selected and labelled), defective among audited."""

    n: int = 0
    selected: int = 0
    audited: int = 0
    defective: int = 0


def defectives(cells: dict[CellKey, DesignCell], draws: int, *, flagged: bool) -> tuple[float, np.ndarray, float]:
    """The estimated number of defective parts among passes (or among defect verdicts), simulated draws of it, and
    its estimated sampling variance (the stratified formula with the finite-population correction)."""
    pooled: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (verdict, stratum, _), cell in cells.items():
        pooled[verdict, stratum][0] += cell.defective
        pooled[verdict, stratum][1] += cell.audited
    point, variance, sims = 0.0, 0.0, np.zeros(draws)
    for place, ((verdict, stratum, _), cell) in enumerate(sorted(cells.items())):
        if (verdict == DEFECT_STRATUM) != flagged or cell.n == 0:
            continue
        # A cell with no audited frame of its own (its probability was in force only briefly) borrows the share
        # of the rest of its stratum, which was drawn by the same rule at another rate.
        k, m = (cell.defective, cell.audited) if cell.audited else tuple(pooled[verdict, stratum])
        unaudited = cell.n - cell.audited
        point += cell.defective + unaudited * k / m
        if cell.audited > 1:
            share_seen = cell.defective / cell.audited
            variance += cell.n * unaudited * share_seen * (1 - share_seen) / (cell.audited - 1)
        sims += cell.defective
        if unaudited:  # a fully audited cell's defectives are known: nothing to draw
            shares = _share_draws(k, m, place, draws)
            sims += _unaudited_defectives(unaudited, shares, k=k, m=m, place=place)
    return point, sims, variance


class _Rows:
    """Up to `most` rows of `draws` random values from one seeded stream, drawn in order as they are first asked
    for (so a row's values never depend on which request asked first): uniforms, or cumulative sums of standard
    exponentials. At 1,000 draws a row is 8 kB; a place's tables hold at most 2 x 129 + 64 rows (2.6 MB), and only
    as many as the counts asked for."""

    def __init__(self, seed: list[int], draws: int, *, cumulative: bool, most: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._draws, self._cumulative, self._most = draws, cumulative, most
        self._rows = np.zeros((1, draws)) if cumulative else np.empty((0, draws))
        self._lock = threading.Lock()

    def upto(self, count: int) -> np.ndarray:
        """The first `count` rows (a cumulative table's row i is the sum of i exponentials; row 0 is zeros)."""
        if len(self._rows) < count:
            with self._lock:
                have = len(self._rows)
                if have < count:
                    more = min(max(count, 2 * have), self._most) - have
                    if self._cumulative:
                        # Summed on from the last row, one term at a time as a single cumsum from zero would: the
                        # same floating-point sums however the rows were asked for.
                        steps = np.concatenate([self._rows[-1:], self._rng.standard_exponential((more, self._draws))])
                        fresh = np.cumsum(steps, axis=0)[1:]
                    else:
                        fresh = np.stack([_stratified(self._rng, self._draws) for _ in range(more)])
                    rows = np.concatenate([self._rows, fresh])
                    rows.setflags(write=False)
                    self._rows = rows
        return self._rows[:count]


@dataclass(frozen=True)
class _PlaceStreams:
    sums_x: _Rows
    sums_y: _Rows
    halves: np.ndarray  # two rows of Z^2 / 2
    uniforms: _Rows
    normals: np.ndarray


_KEPT: dict[tuple[int, int], _PlaceStreams] = {}  # by (place, draws)
_KEPT_LOCK = threading.Lock()
_KEPT_MOST = 64  # (place, draws) pairs kept; past this (a group of dozens of cells) all but the warm ones go
WARM_PLACES = 4  # a group's cells: a defect verdicts' cell and a few of passes (bands, a changed audit rate)
WARM_DRAWS = 1000  # the chart buckets' draws (inspection.audit_estimates.BUCKET_DRAWS)


def _streams(place: int, draws: int) -> _PlaceStreams:
    streams = _KEPT.get((place, draws))
    if streams is None:
        with _KEPT_LOCK:
            streams = _KEPT.get((place, draws))
            if streams is None:
                if len(_KEPT) >= _KEPT_MOST:
                    _forget(but_warm=True)
                streams = _KEPT[place, draws] = _new_streams(place, draws)
    return streams


def _new_streams(place: int, draws: int) -> _PlaceStreams:
    rng = np.random.default_rng([_HALVES, place, draws])
    # |Z| for a standard normal Z from its quantile function (P(|Z| <= z) = 2 Phi(z) - 1), halved and squared.
    halves = np.stack([_normal_quantiles((1 + _stratified(rng, draws)) / 2) ** 2 / 2 for _ in range(2)])
    normals = _normal_quantiles(_stratified(np.random.default_rng([_NORMALS, place, draws]), draws))
    for kept in (halves, normals):
        kept.setflags(write=False)
    return _PlaceStreams(
        _Rows([_SUMS_X, place, draws], draws, cumulative=True, most=GAMMA_ROWS + 1),
        _Rows([_SUMS_Y, place, draws], draws, cumulative=True, most=GAMMA_ROWS + 1),
        halves,
        _Rows([_UNIFORMS, place, draws], draws, cumulative=False, most=BERNOULLI_ROWS),
        normals,
    )


def _stratified(rng: np.random.Generator, draws: int) -> np.ndarray:
    """`draws` uniform values, one from each of `draws` equal slices of (0, 1), in random order: each is uniform,
    and together they fill the distribution evenly (the band ends' Monte Carlo error falls; with the streams kept
    for every group, an uneven fill would have moved all of their ends alike)."""
    return (rng.permutation(draws) + rng.random(draws)) / draws


def _normal_quantiles(levels: np.ndarray) -> np.ndarray:
    """The standard normal's quantile function at each level (the standard library's: the server's image has no
    scipy; 0.08 ms for 1,000). A level of exactly 0 (a chance of 2^-53) is moved just inside the distribution."""
    inverse = NormalDist().inv_cdf
    return np.array([inverse(level) for level in np.clip(levels, 1e-300, None).tolist()])


def warm_streams() -> None:
    """Draw the tables of the first WARM_PLACES places at WARM_DRAWS in full (about 2.6 MB and 5 ms each), as a
    server does at its start, so that a chart's first request reads them instead of drawing them."""
    for place in range(WARM_PLACES):
        streams = _streams(place, WARM_DRAWS)
        streams.sums_x.upto(GAMMA_ROWS + 1)
        streams.sums_y.upto(GAMMA_ROWS + 1)
        streams.uniforms.upto(BERNOULLI_ROWS)


def clear_streams(*, but_warm: bool = False) -> None:
    """Forget the kept streams (drawn again, identically, when asked for); with `but_warm`, all but those that
    warm_streams draws, which leaves what a server has after its start."""
    with _KEPT_LOCK:
        _forget(but_warm=but_warm)


def _forget(*, but_warm: bool) -> None:
    for place, draws in list(_KEPT):
        if not (but_warm and draws == WARM_DRAWS and place < WARM_PLACES):
            del _KEPT[place, draws]


def _share_draws(k: int, m: int, place: int, draws: int) -> np.ndarray:
    """Draws from Beta(k + 1/2, m - k + 1/2) for the cell at `place`."""
    if max(k, m - k) > GAMMA_ROWS:
        return _fresh_share_draws(k, m, place, draws)
    streams = _streams(place, draws)
    x = streams.sums_x.upto(k + 1)[k] + streams.halves[0]
    y = streams.sums_y.upto(m - k + 1)[m - k] + streams.halves[1]
    return x / (x + y)


def _fresh_share_draws(k: int, m: int, place: int, draws: int) -> np.ndarray:
    rng = np.random.default_rng([_FRESH_SHARES, k, m, place, draws])
    x, y = rng.standard_gamma(k + PRIOR, draws), rng.standard_gamma(m - k + PRIOR, draws)
    return x / (x + y)


def _unaudited_defectives(n: int, shares: np.ndarray, *, k: int, m: int, place: int) -> np.ndarray:
    """Binomial(n, share) for each drawn share: the defective parts among a cell's n unaudited frames.

    Up to BERNOULLI_ROWS frames, the number of n kept uniform rows below the share. Where the unaudited frames
    outnumber the audited ones NORMAL_FROM times or more, the binomial's own variance is at most about
    1/NORMAL_FROM of the share's (their ratio is about (m + 1) / n), so a rounded normal draw with the binomial's
    mean and variance stands in for it; the coverage simulation runs in this regime. Between the two, numpy's
    binomial sampler, which sets up its algorithm afresh for every share (about 50 us per 1,000 draws).
    """
    draws = len(shares)
    if n <= BERNOULLI_ROWS:
        below = _streams(place, draws).uniforms.upto(n) < shares
        return below.sum(axis=0, dtype=np.int32)
    if n < NORMAL_FROM * (m + 1):
        return np.random.default_rng([_FRESH_BINOMIAL, n, k, m, place, draws]).binomial(n, shares)
    spread = np.sqrt(n * shares * (1 - shares))
    return np.clip(np.rint(n * shares + spread * _streams(place, draws).normals), 0, n)


def shares_of(sims_a: np.ndarray, sims_b: np.ndarray) -> np.ndarray:
    """A / (A + B) draw by draw, 0 where both are 0."""
    total = sims_a + sims_b
    return np.divide(sims_a, total, out=np.zeros_like(sims_a), where=total > 0)


@functools.lru_cache(maxsize=8)
def _quantile_plan(draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where np.quantile's linear interpolation reads the 2.5 % and 97.5 % points of `draws` sorted values: the
    ranks below and above each, and the weight of the one above."""
    positions = np.array([0.025, 0.975]) * (draws - 1)
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, draws - 1)
    return below, above, positions - below


def interval(draws: np.ndarray, estimate: float) -> list[float]:
    """The 2.5 % and 97.5 % points of the draws as np.quantile reads them, widened to hold the point estimate
    (with zero escapes the estimate is 0, the bound above is not).

    One sort: np.quantile itself cost ten times as much on these small arrays (its overhead), and numpy's partial
    sort (introselect) more than its full one, which uses SIMD instructions, on draws with many ties."""
    below, above, weights = _quantile_plan(len(draws))
    ordered = np.sort(draws)
    low, high = (ordered[below] * (1 - weights) + ordered[above] * weights).tolist()
    return [float(min(low, estimate)), float(max(high, estimate))]
