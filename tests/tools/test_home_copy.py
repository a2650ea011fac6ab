"""A copied INSPECTION_HOME stands alone: its registry points at its own artifacts, so what is written through the
copy (an export, a new version) never lands in the original."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.settings import Settings
from models import registry
from tools.home_copy import copy_home, rebase_artifact_locations

pytestmark = pytest.mark.slow


def test_a_copied_home_reads_and_writes_its_own_artifacts(trained_product, tmp_path: Path) -> None:
    source, product = trained_product.settings, trained_product.product
    original = registry.resolve_version(source, product, 1)
    original_files = sorted(p.relative_to(original.artifacts) for p in original.artifacts.rglob("*"))
    copy = source.model_copy(update={"home": tmp_path / "copy"})
    copy_home(source, copy)

    copied = registry.resolve_version(copy, product, 1)
    assert copied.artifacts.is_relative_to(copy.mlflow_artifacts_dir.resolve())
    assert sorted(p.relative_to(copied.artifacts) for p in copied.artifacts.rglob("*")) == original_files
    (copied.artifacts / "written-through-the-copy.txt").write_text("only here")
    assert not (original.artifacts / "written-through-the-copy.txt").exists()
    # A new run of the copy's experiment keeps its artifacts in the copy too.
    client = registry.mlflow_client(copy)
    run = client.create_run(client.get_experiment_by_name(product).experiment_id)
    assert run.info.artifact_uri.startswith(copy.mlflow_artifacts_dir.resolve().as_uri() + "/")
    # The original's records are untouched, and rebasing again finds nothing left to move.
    assert registry.resolve_version(source, product, 1).artifacts == original.artifacts
    assert rebase_artifact_locations(copy, moved_from=source) == 0


def test_only_locations_under_the_old_artifact_folder_move(trained_product, tmp_path: Path) -> None:
    """A version registered from a folder outside the home (as tests and imports do) keeps its location, and so
    does a folder whose name merely starts like the home's."""
    source, product = trained_product.settings, trained_product.product
    copy = source.model_copy(update={"home": tmp_path / "copy"})
    copy_home(source, copy)
    elsewhere = tmp_path / "elsewhere"
    lookalike = Path(str(copy.mlflow_artifacts_dir.resolve()) + "-not-it")
    client = registry.mlflow_client(copy)
    experiment = client.get_experiment_by_name(product).experiment_id
    sources = {}
    for folder in (elsewhere, lookalike):
        folder.mkdir(parents=True)
        run = client.create_run(experiment)
        sources[registry.register_version(copy, product, run.info.run_id, folder.as_uri(), {})] = folder
    moved = Settings(home=tmp_path / "moved", configs_dir=source.configs_dir)
    copy_home(copy, moved)
    for version, folder in sources.items():
        assert registry.resolve_version(moved, product, version).artifacts == folder
    assert registry.resolve_version(moved, product, 1).artifacts.is_relative_to(moved.mlflow_artifacts_dir.resolve())
