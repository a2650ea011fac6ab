"""The audit rates each served product's frames are drawn at, as this replica knows them.

Read from the shared database at start-up and at every model poll, and at once on this replica when QA changes
them here; another replica follows within one poll. The lag costs nothing in accuracy: each row stores the
probability it was actually drawn with, and the estimates weight by that.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from inspection.audit import AuditPolicy
from inspection.storage.audit_settings import audit_setting_in_force
from serving.state import ServingState

log = logging.getLogger(__name__)


def audit_policy(state: ServingState, product: str) -> AuditPolicy:
    """The rates a frame of `product` is drawn at now (the defaults until the first read has answered)."""
    return state.audit_policies.get(product) or AuditPolicy()


async def refresh_audit_policies(state: ServingState) -> None:
    """Re-read the rates in force for every served product; one that cannot be read keeps its current rates."""
    for product in list(state.engines):
        try:
            setting = await run_in_threadpool(
                audit_setting_in_force, state.sessions, state.settings.configs_dir, product
            )
        except Exception:
            log.exception("reading the audit rates of %s failed; keeping %s", product, audit_policy(state, product))
            continue
        if state.audit_policies.get(product) != setting.policy:
            log.info("audit rates of %s: %s (%s)", product, setting.policy.describe(), setting.source)
        state.audit_policies[product] = setting.policy
