"""`inspection audit P`: rates set with who and why, impossible ones refused with nothing recorded."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from inspection.storage.database import open_database
from inspection.storage.schema import AuditPolicyRecord
from tests.cli.cli_runner import assert_clean_error, run_cli


def test_an_unknown_product_is_refused(settings) -> None:
    assert_clean_error(run_cli(settings, "audit", "no-such-product", "--pass-rate", "0.1", "--reason", "x"), "no-such")


@pytest.mark.slow
def test_rates_are_set_shown_and_refused_when_impossible(trained_product, tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"  # its own database: the session's server never sees these rates
    monkeypatch.setenv("INSPECTION_DATABASE_URL", url)
    settings, product = trained_product.settings, trained_product.product
    for args, fragment in [
        (("--pass-rate", "1.5", "--reason", "x"), "pass_rate"),
        (("--band", "0:0.5=0.1", "--reason", "x"), "cover [0, 1]"),
        (("--band", "half=0.1", "--reason", "x"), "LO:HI=RATE"),
        (("--pass-rate", "0.2"), "say why"),
    ]:
        assert_clean_error(run_cli(settings, "audit", product, *args), fragment)
    with open_database(url)() as session:
        assert session.scalar(select(func.count()).select_from(AuditPolicyRecord)) == 0
    done = run_cli(
        settings,
        "audit",
        product,
        "--band",
        "0:0.5=0.02",
        "--band",
        "0.5:1=0.25",
        "--reason",
        "near misses",
        "--by",
        "qa-lead",
    )
    assert done.returncode == 0, done.stderr
    assert "passes by score / threshold: 2.0% at 0-0.5, 25.0% at 0.5-1" in done.stdout and "qa-lead" in done.stdout
    shown = run_cli(settings, "audit", product)
    assert shown.returncode == 0 and "set by QA" in shown.stdout and "near misses" in shown.stdout
