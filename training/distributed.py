"""Data-parallel training under torchrun: one process per GPU (or per CPU share), each a rank of one job.

`torchrun --nproc_per_node=N --no-python inspection train P` starts N copies of the command; each joins the
process group here, caches its shard of the trunk features, trains on its share of every global batch and
averages gradients with the others, and rank 0 alone goes on to calibrate, evaluate, track and register. A plain
process (no torchrun, or WORLD_SIZE 1: one GPU, one CPU) never touches torch.distributed, and every helper
below then returns its input unchanged, so that path runs exactly the code it ran before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

# Ranks above 0 wait in a collective while rank 0 alone fits the linear probe and validates each epoch; on CPUs
# that can take longer than gloo's default half hour on a big product, and a stuck peer still fails in the end.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Launch:
    """Where torchrun placed this process: its rank among all, its rank on this machine (its GPU), how many."""

    rank: int
    local_rank: int
    world_size: int


def torchrun_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch torchrun describes in the environment, or None for a plain process (or a world of one).

    These variables are torchrun's contract with the processes it starts, not settings of ours, so they are
    read here and nowhere else."""
    env = os.environ if environ is None else environ
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    rank = int(env["RANK"])
    return Launch(rank, int(env.get("LOCAL_RANK", rank)), world_size)


def wants_cuda(requested: str) -> bool:
    """Whether the `device` setting puts training on a GPU ('auto' does when one is present)."""
    return requested.startswith("cuda") or (requested == "auto" and torch.cuda.is_available())


@contextmanager
def process_group(requested_device: str) -> Iterator[Launch | None]:
    """Join torchrun's process group for the block (NCCL when the ranks train on GPUs, else gloo); yields the
    launch, or None outside torchrun, where it does nothing at all."""
    launch = torchrun_launch()
    if launch is None:
        yield None
        return
    cuda = wants_cuda(requested_device)
    if cuda:
        torch.cuda.set_device(launch.local_rank)  # NCCL's object collectives stage through the current device
    # MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE come from torchrun through the default env:// rendezvous.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield launch
    finally:
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0, the one that logs, calibrates, evaluates and registers (always True for a plain process)."""
    return rank() == 0


def describe() -> str:
    """A line for the run header, or '' for a plain process."""
    if not is_distributed():
        return ""
    return (
        f"distributed: world size {world_size()} ({dist.get_backend()}); each rank trains on its share of every "
        "batch, rank 0 calibrates, evaluates and registers"
    )


def local_device(device: torch.device) -> torch.device:
    """Under torchrun a bare 'cuda' means this rank's own GPU, cuda:LOCAL_RANK; anything else is unchanged."""
    launch = torchrun_launch()
    if launch is not None and is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", launch.local_rank)
    return device


def _collective_device() -> torch.device:
    # NCCL moves only GPU tensors; gloo only CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_object(value: T) -> T:
    """Rank 0's `value` on every rank (pickled); a plain process gets its own back."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's, in place."""
    if not is_distributed():
        return
    for tensor in module.state_dict().values():
        # A collective wants a plain contiguous tensor; the CPU fine-tune keeps its convolutions channels-last.
        plain = tensor.contiguous()
        dist.broadcast(plain, src=0)
        if plain is not tensor:
            tensor.copy_(plain)


def batch_share(index: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """One rank's share of a global batch: every `world_size`-th sample from its rank on. The shares of all ranks
    are disjoint and together the whole batch, so the global batch stays what the config says."""
    return index[rank::world_size]


def shard_sizes(n: int, world_size: int) -> list[int]:
    """How many of `n` items each rank takes in contiguous blocks (the first ones take one more), or [n] when
    there are fewer items than ranks, and every rank then takes all of them."""
    if world_size <= 1 or n < world_size:
        return [n]
    base, extra = divmod(n, world_size)
    return [base + (r < extra) for r in range(world_size)]


def shard(items: Sequence[T]) -> list[T]:
    """This rank's contiguous block of `items` (all of them for a plain process, or when items < ranks)."""
    sizes = shard_sizes(len(items), world_size())
    if len(sizes) == 1:
        return list(items)
    start = sum(sizes[: rank()])
    return list(items[start : start + sizes[rank()]])


def is_sharded(n: int) -> bool:
    """Whether `shard` splits `n` items across ranks."""
    return len(shard_sizes(n, world_size())) > 1


def gather_shards(local: torch.Tensor, n: int, dim: int = 0) -> torch.Tensor:
    """Every rank's `shard` of `n` rows along `dim`, concatenated in rank order, on the CPU, on every rank."""
    sizes = shard_sizes(n, world_size())
    if len(sizes) == 1:
        return local
    device = _collective_device()
    # all_gather wants equal shapes: pad each block to the longest, cut the padding off after.
    padded_shape = list(local.shape)
    padded_shape[dim] = max(sizes)
    padded = local.new_zeros(padded_shape, device=device)
    padded.narrow(dim, 0, local.shape[dim]).copy_(local)
    blocks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(blocks, padded)
    return torch.cat([block.narrow(dim, 0, size).cpu() for block, size in zip(blocks, sizes, strict=True)], dim)


def average_gradients(parameters: Sequence[nn.Parameter], weight: float, loss: torch.Tensor) -> float:
    """Sum over ranks of every rank's gradients and loss scaled by `weight` (its share of the global batch, 0 when
    it sat the step out), in one all-reduce; returns the global batch's loss. A parameter no rank produced a
    gradient for keeps none, as in a plain process, so the optimizer skips it there too."""
    device = parameters[0].device
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight for p in parameters]
    flat = torch.cat([*grads, present, (loss.detach().to(device, torch.float32) * weight).reshape(1)])
    dist.all_reduce(flat)
    offset = 0
    for parameter, reduced_present in zip(parameters, flat[-len(parameters) - 1 : -1].tolist(), strict=True):
        count = parameter.numel()
        parameter.grad = flat[offset : offset + count].view_as(parameter) if reduced_present > 0 else None
        offset += count
    return float(flat[-1])
