"""`inspection keys create`: the key printed alone, stored only as its hash, unknown roles refused."""

from __future__ import annotations

from tests.cli.cli_runner import assert_clean_error, run_cli


def test_keys_create_prints_the_key_alone_and_stores_only_its_hash(settings) -> None:
    from inspection.storage.api_keys import authenticate
    from inspection.storage.database import open_database

    result = run_cli(settings, "keys", "create", "--role", "qa", "--name", "anna")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("insp_") and "\n" not in key
    found = authenticate(open_database(settings.resolved_database_url), key)
    assert found is not None and found.role == "qa"
    # WAL mode: recent writes may still sit in the -wal file, so look in every file of the database.
    for path in settings.home.glob("inspection.db*"):
        assert key.encode() not in path.read_bytes()
    assert_clean_error(run_cli(settings, "keys", "create", "--role", "admin", "--name", "x"), "unknown role")
