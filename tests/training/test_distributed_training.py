"""Data-parallel training under torchrun: two gloo ranks on the CPU, each a real process.

Run as a script (by torchrun, from the trainer test below) this file is the worker: each rank trains the classifier
on the same small random feature tensors and saves its weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets.importers.folder import import_folder
from inspection.product_config import TrainConfig
from inspection.settings import Settings
from models.classifier import DefectClassifier
from models.registry import list_versions, mlflow_client
from tests.conftest import TINY_CONFIG, TINY_PRODUCT, free_port, make_configs_dir
from training import distributed
from training.trainer import TrainingData, train_classifier

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
# Dropout off and one defect type (no type loss), so the 2-rank fine-tune computes the gradient of the whole
# batch's mean loss exactly like one process, up to float summation order.
CONFIG = TrainConfig(epochs=3, batch_size=16, probe_steps=40, patience=10)


def _model() -> DefectClassifier:
    torch.manual_seed(0)
    return DefectClassifier(num_defect_types=1, trainable_stages=1, dropout=0.0)


def _data(n: int) -> TrainingData:
    g = torch.Generator().manual_seed(1)
    is_defect = (torch.arange(n) % 3 == 0).float()
    types = torch.where(is_defect > 0, 0, -1)
    views = torch.randn(2, n, 192, 4, 4, generator=g)
    views[:, is_defect > 0, :32] += 1.5
    val = torch.randn(n // 2, 192, 4, 4, generator=g)
    val_defect = (torch.arange(n // 2) % 3 == 0).float()
    val[val_defect > 0, :32] += 1.5
    return TrainingData(views.half(), is_defect, types, val.half(), val_defect, torch.where(val_defect > 0, 0, -1))


def _train(n: int) -> tuple[DefectClassifier, list[float | None]]:
    model = _model()
    result = train_classifier(model, _data(n), CONFIG, seed=0, device=CPU)
    return model, [s.val_auroc for s in result.history]


def _worker(out: Path) -> None:
    """One torchrun rank: train on 48 samples (shares of 8 + 8) and on 51 (the last batch of 3 leaves rank 1 a
    single sample, so it sits that step out), save the weights and the validation history."""
    with distributed.process_group("cpu") as launch:
        assert launch is not None
        for n in (48, 51):
            model, history = _train(n)
            torch.save(model.state_dict(), out / f"n{n}-rank{launch.rank}.pt")
            (out / f"n{n}-rank{launch.rank}.json").write_text(json.dumps(history))


def _torchrun(port: int, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    return subprocess.run(
        [*command, f"--master_port={port}", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200", **extra}


def test_batch_shares_are_disjoint_and_make_up_the_global_batch() -> None:
    index = torch.tensor([7, 3, 9, 0, 4, 8, 1])
    shares = [distributed.batch_share(index, rank, 2) for rank in range(2)]
    assert shares[0].tolist() == [7, 9, 4, 1] and shares[1].tolist() == [3, 0, 8]
    for world_size in (1, 2, 3, 8):
        shares = [distributed.batch_share(index, rank, world_size) for rank in range(world_size)]
        joined = torch.cat(shares).tolist()
        assert sorted(joined) == sorted(index.tolist()) and len(joined) == len(index)  # all of it, no overlap
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_feature_shards_are_contiguous_blocks_that_cover_every_item() -> None:
    assert distributed.shard_sizes(10, 1) == [10]
    assert distributed.shard_sizes(10, 3) == [4, 3, 3]
    assert distributed.shard_sizes(2, 4) == [2]  # fewer items than ranks: every rank takes all
    assert distributed.shard(list(range(5))) == list(range(5))  # a plain process is never sharded


def test_a_plain_process_is_not_a_torchrun_launch() -> None:
    assert distributed.torchrun_launch({}) is None
    assert distributed.torchrun_launch({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert distributed.torchrun_launch({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}) == distributed.Launch(
        1, 1, 2
    )
    with distributed.process_group("cpu") as launch:  # a no-op outside torchrun
        assert launch is None and not distributed.is_distributed() and distributed.is_main_process()


@pytest.mark.slow
def test_two_ranks_train_the_weights_one_process_trains(tmp_path) -> None:
    result = _torchrun(free_port(), str(Path(__file__)), str(tmp_path), cwd=tmp_path, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for n in (48, 51):
        ranks = [torch.load(tmp_path / f"n{n}-rank{r}.pt") for r in range(2)]
        for name, tensor in ranks[0].items():  # the all-reduce keeps the ranks' weights identical
            assert torch.equal(tensor, ranks[1][name]), (n, name)
        histories = [json.loads((tmp_path / f"n{n}-rank{r}.json").read_text()) for r in range(2)]
        assert histories[0] == histories[1]  # one early-stopping decision, rank 0's
    single, history = _train(48)
    assert json.loads((tmp_path / "n48-rank0.json").read_text()) == pytest.approx(history, abs=1e-4)
    distributed_state = torch.load(tmp_path / "n48-rank0.pt")
    for name, tensor in single.state_dict().items():
        assert torch.allclose(tensor.float(), distributed_state[name].float(), atol=1e-4), name


@pytest.mark.slow
def test_torchrun_inspection_train_registers_one_version_from_rank_zero(
    tmp_path, synthetic_source, trained_product
) -> None:
    """`torchrun --nproc_per_node=2 ... inspection train` on the tiny product: rank 0 alone tracks and registers,
    and the test AUROC is that of the plain process's training (the session's trained_product)."""
    settings = Settings(
        home=tmp_path / "var", configs_dir=make_configs_dir(tmp_path / "configs", {TINY_PRODUCT: TINY_CONFIG})
    )
    import_folder(synthetic_source, settings.dataset_dir(TINY_PRODUCT), TINY_PRODUCT)
    env = _env(
        INSPECTION_HOME=str(settings.home), INSPECTION_CONFIGS_DIR=str(settings.configs_dir), INSPECTION_DEVICE="cpu"
    )
    result = _torchrun(free_port(), "-m", "cli.main", "train", TINY_PRODUCT, cwd=tmp_path, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert "world size 2 (gloo)" in log
    assert log.count("epoch   1 finetune") == 1  # rank 1 trains silently
    assert [v.version for v in list_versions(settings, TINY_PRODUCT)] == [1]
    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(TINY_PRODUCT)
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 1
    # No stray MLflow store (./mlruns, ./mlflow.db) from rank 1 in the working directory both ranks ran in.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "var"]
    (version,) = list_versions(settings, TINY_PRODUCT)
    report = json.loads((version.artifacts / "evaluation" / "report.json").read_text())
    single = trained_product.outcome.report["test"]["auroc"]
    assert report["test"]["auroc"] >= 0.9 and report["test"]["auroc"] == pytest.approx(single, abs=0.05)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
