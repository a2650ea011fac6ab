"""The audit design: the probability that an answered frame is drawn for QA's audit, given its verdict.

Live miss and false-detection rates are only as good as the frames they are measured on. QA's review queue (defect
verdicts and borderline passes) is the right place to look for errors, and the wrong sample to count them on: the
confident passes, where escaped defects hide and most good parts are, never reach it. So every answered frame is
drawn into an audit sample, or not, when it is answered, with a probability fixed by its verdict (and, for passes,
optionally by how close its score came to the threshold). The estimates in inspection.audit_estimates weight each
audited frame by that probability. See docs/decisions/0014-audit-sampling.md.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from inspection.errors import InspectionError

PASS_STRATUM = "pass"
DEFECT_STRATUM = "defect"
DEFAULT_PASS_RATE = 0.05
DEFAULT_DEFECT_RATE = 1.0
MAX_BANDS = 8
# A proper random source, independent between replicas and unpredictable to anyone who sees the frames: the
# operating system's (os.urandom), about a microsecond a draw.
_RANDOM = random.SystemRandom()


class AuditRefused(InspectionError):  # noqa: N818 (reads as the outcome at call sites)
    """An audit setting that cannot be used (a rate outside [0, 1], bands that do not cover [0, 1], ...)."""


class PassBand(BaseModel):
    """Passes whose score is in [lo, hi) of their threshold are audited at `rate` (hi = 1 includes the top)."""

    model_config = ConfigDict(extra="forbid")

    lo: float = Field(ge=0, le=1)
    hi: float = Field(ge=0, le=1)
    rate: float = Field(ge=0, le=1)


class AuditPolicy(BaseModel):
    """A product's audit rates: every defect verdict at `defect_rate`, every pass at `pass_rate`, or, with
    `pass_bands`, at the rate of the band its score falls in (score / threshold, so "near the threshold" keeps its
    meaning when QA moves the threshold)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pass_rate: float = Field(default=DEFAULT_PASS_RATE, ge=0, le=1, validation_alias=AliasChoices("pass_rate", "pass"))
    defect_rate: float = Field(
        default=DEFAULT_DEFECT_RATE, ge=0, le=1, validation_alias=AliasChoices("defect_rate", "defect")
    )
    pass_bands: list[PassBand] | None = None

    @model_validator(mode="after")
    def _bands_cover_the_unit_interval(self) -> AuditPolicy:
        bands = self.pass_bands
        if bands is None:
            return self
        if not 1 <= len(bands) <= MAX_BANDS:
            raise ValueError(f"pass_bands needs 1 to {MAX_BANDS} bands")
        if bands[0].lo != 0 or bands[-1].hi != 1:
            raise ValueError("pass_bands must cover [0, 1] of the threshold: the first starts at 0, the last ends at 1")
        for band in bands:
            if band.lo >= band.hi:
                raise ValueError(f"pass band [{band.lo:g}, {band.hi:g}) is empty: lo must be below hi")
        for before, after in itertools.pairwise(bands):
            if before.hi != after.lo:
                raise ValueError(
                    f"pass_bands must be contiguous and sorted: [{before.lo:g}, {before.hi:g}) is followed by "
                    f"[{after.lo:g}, {after.hi:g})"
                )
        return self

    def pass_probability(self, score_fraction: float) -> tuple[float, str]:
        """The audit probability and stratum name of a pass whose score is `score_fraction` of its threshold."""
        if self.pass_bands is None:
            return self.pass_rate, PASS_STRATUM
        fraction = min(max(score_fraction, 0.0), 1.0)
        for band in self.pass_bands:
            if fraction < band.hi or band.hi == 1:
                return band.rate, band_stratum(band)
        raise AssertionError("bands cover [0, 1]")  # pragma: no cover (checked by the validator)

    def describe(self) -> str:
        """One line a person reads: what share of which frames goes to QA."""
        if self.pass_bands is None:
            passes = f"{self.pass_rate:.1%} of passes"
        else:
            parts = [f"{band.rate:.1%} at {band.lo:g}-{band.hi:g}" for band in self.pass_bands]
            passes = "passes by score / threshold: " + ", ".join(parts)
        return f"{self.defect_rate:.1%} of defect verdicts, {passes}"


def band_stratum(band: PassBand) -> str:
    """The stored stratum name of a pass band, e.g. 'pass:0.5-1'."""
    return f"{PASS_STRATUM}:{band.lo:g}-{band.hi:g}"


def parse_policy(data: dict[str, Any]) -> AuditPolicy:
    """A validated policy from user input (CLI, HTTP, YAML), or AuditRefused with a message a person can act on."""
    try:
        return AuditPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'audit'}: {error['msg']}" for error in exc.errors()
        )
        raise AuditRefused(f"audit setting refused: {problems}") from exc


@dataclass(frozen=True, slots=True)
class AuditDraw:
    """One answered frame's draw: the probability it had, the stratum it came from, and whether it was selected."""

    probability: float
    stratum: str
    selected: bool


def draw_for_audit(policy: AuditPolicy, is_defect: bool, score: float, threshold: float) -> AuditDraw:
    """Draw one answered frame into the audit or not, with the probability its verdict (and score) gives it."""
    if is_defect:
        probability, stratum = policy.defect_rate, DEFECT_STRATUM
    else:
        fraction = score / threshold if threshold > 0 else 1.0
        probability, stratum = policy.pass_probability(fraction)
    # random() is in [0, 1): a probability of 1 always selects, 0 never.
    return AuditDraw(probability, stratum, _RANDOM.random() < probability)
