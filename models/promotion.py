"""Gated promotion and rollback of a product's champion, judged on the frozen test split's evaluation reports.

Recording: the new champion gets version tags (`promoted_at`, `promoted_from`, `promotion_reason`, `forced`);
the registered model keeps `champion_history` (a JSON stack of earlier champions, what rollback pops) and
`promotion_log` (a JSON list of every promotion and rollback, newest last); alias `previous-champion` shows
the top of the stack. Tags live in the registry's database, so they survive restarts and travel with it.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from inspection.errors import InspectionError
from inspection.report import EvaluationReport
from inspection.settings import Settings
from models import registry
from models.load_check import check_version_serves
from models.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelVersionInfo

HISTORY_TAG = "champion_history"
LOG_TAG = "promotion_log"
# MLflow guarantees 5,000 bytes per registered-model tag on every backend; the log drops its oldest entries to fit.
MAX_TAG_BYTES = 5000
MAX_REASON_CHARS = 1000
LOG_REASON_CHARS = 200


class PromotionRefused(InspectionError):  # noqa: N818 (reads as the outcome at call sites)
    """The candidate is not measurably as good as the champion on the same frozen test split."""


@dataclass(frozen=True)
class Evidence:
    """A version's test-split rates with their Wilson 95% intervals and sample sizes."""

    version: int
    n_good: int
    n_defect: int
    miss_rate: float | None
    miss_rate_ci95: tuple[float, float]
    false_detection_rate: float | None
    false_detection_rate_ci95: tuple[float, float]


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion or rollback did; `forced` means the gate objected and --force overrode it."""

    product: str
    old_version: int | None
    new_version: int
    forced: bool
    reason: str | None
    comparison: str
    changed: bool = True


def evidence(info: ModelVersionInfo) -> Evidence | None:
    """Test-split evidence from the version's report.json, or None when there is no usable report."""
    report = registry.read_report(info)
    if report is None:
        return None
    try:
        test = EvaluationReport.from_json(report).test
    except ValidationError:  # not the shape the pipeline writes
        return None
    if None in test.miss_rate_ci95 or None in test.false_detection_rate_ci95:
        return None
    return Evidence(
        version=info.version,
        n_good=test.n_good,
        n_defect=test.n_defect,
        miss_rate=test.miss_rate,
        miss_rate_ci95=test.miss_rate_ci95,  # type: ignore[arg-type]
        false_detection_rate=test.false_detection_rate,
        false_detection_rate_ci95=test.false_detection_rate_ci95,  # type: ignore[arg-type]
    )


def rate_text(rate: float | None, ci: tuple[float | None, float | None], n: int) -> str:
    """'2.00% (0.55–7.00%, n=100)': a rate is never shown without its interval and sample size."""
    if rate is None or ci[0] is None or ci[1] is None:
        return f"n/a (n={n})"
    return f"{100 * rate:.2f}% ({100 * ci[0]:.2f}–{100 * ci[1]:.2f}%, n={n})"


def comparison_text(rows: list[tuple[str, Evidence | None]]) -> str:
    """A small fixed-width table of test miss and false-detection rates, one line per labelled version."""
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}  {'test miss rate (95% CI, n)':<32}  test false-detection rate (95% CI, n)"]
    for label, found in rows:
        if found is None:
            lines.append(f"{label:<{width}}  no readable evaluation report")
            continue
        miss = rate_text(found.miss_rate, found.miss_rate_ci95, found.n_defect)
        fdr = rate_text(found.false_detection_rate, found.false_detection_rate_ci95, found.n_good)
        lines.append(f"{label:<{width}}  {miss:<32}  {fdr}")
    return "\n".join(lines)


def gate_failures(current: Evidence | None, candidate: Evidence | None) -> list[str]:
    """Why the candidate may not replace the champion; empty when it may."""
    if candidate is None:
        return ["the candidate has no readable evaluation report, so there is no evidence for it"]
    if current is None:
        return ["the champion has no readable evaluation report, so there is nothing to compare against"]
    if (current.n_good, current.n_defect) != (candidate.n_good, candidate.n_defect):
        return [
            f"test sets differ (champion n_good={current.n_good}, n_defect={current.n_defect}; candidate "
            f"n_good={candidate.n_good}, n_defect={candidate.n_defect}): the comparison is not like-for-like"
        ]
    if candidate.miss_rate is None or current.miss_rate is None:
        return ["the test split has no defective images, so neither miss rate is known"]
    # Worse beyond noise: the candidate's point estimate lies above the champion's Wilson 95% upper bound.
    if candidate.miss_rate > current.miss_rate_ci95[1]:
        return [
            f"candidate v{candidate.version} test miss rate {100 * candidate.miss_rate:.2f}% is above the upper "
            f"95% bound {100 * current.miss_rate_ci95[1]:.2f}% of champion v{current.version}"
        ]
    return []


@contextmanager
def registry_lock(settings: Settings, product: str) -> Iterator[None]:
    """Serialize read-modify-write of a product's registry tags (promotion history, threshold logs) between
    processes sharing this INSPECTION_HOME."""
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    with (settings.mlflow_dir / f".{product}.promotion.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _json_list(tags: dict[str, str], key: str) -> list[Any]:
    try:
        value = json.loads(tags.get(key, "[]"))
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def champion_history(settings: Settings, product: str) -> list[int]:
    """Earlier champions, oldest first; rollback restores the last one."""
    return [int(v) for v in _json_list(registry.model_tags(settings, product), HISTORY_TAG)]


def promotion_log(settings: Settings, product: str) -> list[dict[str, Any]]:
    """Every recorded promotion and rollback, oldest first (the oldest drop off to fit the tag size)."""
    return [e for e in _json_list(registry.model_tags(settings, product), LOG_TAG) if isinstance(e, dict)]


def _record(settings: Settings, product: str, history: list[int], entry: dict[str, Any]) -> None:
    """Write the history stack, the previous-champion alias, the new champion's tags and the log entry."""
    registry.set_model_tag(settings, product, HISTORY_TAG, json.dumps(history[-100:]))
    if history:
        registry.set_alias(settings, product, PREVIOUS_CHAMPION, history[-1])
    else:
        registry.delete_alias(settings, product, PREVIOUS_CHAMPION)
    reason, source = entry["reason"] or "", "" if entry["from"] is None else str(entry["from"])
    tags = {"promoted_at": entry["at"], "promoted_from": source, "promotion_reason": reason}
    registry.set_version_tags(settings, product, entry["to"], {**tags, "forced": str(entry["forced"]).lower()})
    log = [*promotion_log(settings, product), {**entry, "reason": reason[:LOG_REASON_CHARS]}]
    while len(log) > 1 and len(json.dumps(log).encode()) > MAX_TAG_BYTES:
        log.pop(0)
    registry.set_model_tag(settings, product, LOG_TAG, json.dumps(log))


def _entry(action: str, old: int | None, new: int, forced: bool, reason: str | None) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return {"at": at, "action": action, "from": old, "to": new, "forced": forced, "reason": reason}


def promote(
    settings: Settings, product: str, version: int | None = None, *, force: bool = False, reason: str | None = None
) -> PromotionResult:
    """Make `version` (default: the challenger) the champion if its test miss rate is not worse beyond noise."""
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise InspectionError("--force needs a --reason saying why the gate is overridden; it is recorded")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InspectionError(f"the reason is {len(reason)} characters; keep it under {MAX_REASON_CHARS}")
    with registry_lock(settings, product):
        if version is None:
            found = registry.challenger(settings, product)
            if found is None:
                raise InspectionError(f"product {product!r} has no challenger: name the VERSION to promote")
            version = found.version
        candidate = registry.resolve_version(settings, product, version)
        current = registry.champion(settings, product)
        new_evidence = evidence(candidate)
        if current is not None and current.version == candidate.version:
            text = comparison_text([(f"champion v{version}", new_evidence)])
            return PromotionResult(product, version, version, False, None, text, changed=False)
        # Before the gate's verdict is recorded: a file no replica could load must never become the champion.
        check_version_serves(candidate)
        old_evidence = None if current is None else evidence(current)
        rows = [(f"candidate v{version}", new_evidence)]
        if current is not None:
            rows.insert(0, (f"champion v{current.version}", old_evidence))
        text = comparison_text(rows)
        failures = [] if current is None else gate_failures(old_evidence, new_evidence)
        if failures and not force:
            raise PromotionRefused(
                f"refusing to promote {product} v{version}: {'; '.join(failures)}.\n{text}\n"
                "Promote anyway only with --force --reason '...' (the reason is recorded)."
            )
        old = None if current is None else current.version
        history = champion_history(settings, product) + ([] if old is None else [old])
        # Forced is recorded only when the gate actually objected, so the log shows real overrides.
        overridden = bool(failures)
        _record(settings, product, history, _entry("promote", old, version, overridden, reason))
        registry.set_alias(settings, product, CHAMPION, version)
        if CHALLENGER in candidate.aliases:
            registry.delete_alias(settings, product, CHALLENGER)
        return PromotionResult(product, old, version, overridden, reason, text)


def rollback(settings: Settings, product: str) -> PromotionResult:
    """Restore the champion that served before the current one (no gate: it served before)."""
    with registry_lock(settings, product):
        current = registry.champion(settings, product)
        if current is None:
            raise InspectionError(f"product {product!r} has no champion to roll back")
        history = champion_history(settings, product)
        existing = {v.version for v in registry.list_versions(settings, product)}
        restored: int | None = None
        while history and restored is None:
            top = history.pop()
            # Skip entries equal to the champion (a crash between recording and moving the alias) or deleted.
            if top != current.version and top in existing:
                restored = top
        if restored is None:
            raise InspectionError(f"product {product!r} has no earlier champion to roll back to")
        info = registry.resolve_version(settings, product, restored)
        text = comparison_text(
            [(f"champion v{current.version}", evidence(current)), (f"restored v{restored}", evidence(info))]
        )
        reason = f"rollback from v{current.version}"
        _record(settings, product, history, _entry("rollback", current.version, restored, False, reason))
        registry.set_alias(settings, product, CHAMPION, restored)
        return PromotionResult(product, current.version, restored, False, reason, text)
