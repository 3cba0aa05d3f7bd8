"""Several processes training one model, as torchrun starts them: the group, and the few collective steps training takes.

``torchrun --nproc_per_node=N -m digitrec train ...`` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; :func:`join` makes them a :class:`Group`
(gloo on the CPU, nccl on CUDA, one GPU per process). Every rank holds the whole data set in memory
and takes its share of each global batch; only the leader (global rank 0) writes files. A process
started alone is the group :data:`ALONE`, for which every step here is free and changes nothing, so
one process trains exactly as it always has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from digitrec.errors import DigitrecError

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place among those training one model: its global rank, how many there are, its rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        """The one process that writes the run directory and prints."""
        return self.rank == 0

    def share(self, count: int, rank: int | None = None) -> slice:
        """A rank's contiguous part of ``count`` items, divided as ``torch.tensor_split`` divides them."""
        rank = self.rank if rank is None else rank
        base, extra = divmod(count, self.size)
        start = rank * base + min(rank, extra)
        return slice(start, start + base + (rank < extra))


ALONE = Group()


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def restarted() -> bool:
    """Whether torchrun has started this group again after one of its processes failed (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def run_id() -> str | None:
    """torchrun's rendezvous id (random with ``--standalone``), the same in every restart of the group; None without one."""
    value = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return None if value in ("", "none") else value


def join(device: str) -> Group:
    """The group torchrun started this process in, its process group made once; ALONE when started alone.

    ``device`` is the resolved device: CUDA means nccl and the machine's GPU number LOCAL_RANK, anything else gloo.
    """
    if not launched():
        return ALONE
    try:
        group = Group(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError) as e:
        raise DigitrecError(f"WORLD_SIZE is set but RANK is missing or not a number ({e}); start several processes with torchrun",
                            "environment") from None
    if "MASTER_ADDR" not in os.environ or not os.environ.get("MASTER_PORT", "").isdigit():
        raise DigitrecError("WORLD_SIZE is set but MASTER_ADDR or MASTER_PORT is not; start several processes with torchrun",
                            "environment")
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", store=_store(group), rank=group.rank, world_size=group.size)
    return group


def _store(group: Group) -> dist.Store:
    """The group's key-value store, its keys under a prefix of their own for each restart of the group.

    torchrun keeps one store across restarts; without a prefix per attempt, a restarted process can
    read the address a killed one published and fail to connect to it (pytorch/pytorch#167288).
    """
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves it; else rank 0 does
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), group.size,
                          is_master=group.leader and not shared, timeout=timedelta(minutes=10))
    return dist.PrefixStore(f"digitrec/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def leave(together: bool = False) -> None:
    """Leave the process group. ``together`` (a command that ended normally on every rank): first wait for the others,
    so that no rank tears Gloo down while the leader still writes the run's files. That alone did not stop Gloo's
    threads aborting a rank at interpreter exit; :func:`digitrec.cli.main` ends a worker before that teardown."""
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def from_leader(group: Group, make: Callable[[], T]) -> T:
    """What ``make()`` returns on the leader, on every rank; a DigitrecError it raises is raised on every rank.

    For whatever only one process may do (claim the run directory, read the saved state where only the
    leader's disk holds it), so that the others neither race it nor wait forever when it fails.
    """
    if group.size == 1:
        return make()
    box: list[Any] = [None, None]
    if group.leader:
        try:
            box[0] = make()
        except DigitrecError as e:
            box[1] = (e.reason, e.source, e.place)
    dist.broadcast_object_list(box, src=0)  # between this run's own processes, never from a file
    if box[1] is not None:
        raise DigitrecError(*box[1])
    return box[0]


def wait(group: Group) -> None:
    """Until every process of the group gets here."""
    if group.size > 1:
        dist.barrier()


def wrap(net: nn.Module, group: Group) -> nn.Module:
    """The module the training step calls: ``net`` alone, or DistributedDataParallel around it.

    DDP averages the gradients over the ranks during backward. Each rank keeps its own BatchNorm
    statistics during an epoch (:func:`average_buffers` evens them at its end); SyncBatchNorm, which
    gives every rank the whole global batch's statistics, works on CUDA only and is used there.
    """
    if group.size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = next(net.parameters()).is_cuda
    if on_cuda:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return DistributedDataParallel(net, device_ids=[group.local_rank] if on_cuda else None, forward_sync_buffers=False)


def total(tensor: torch.Tensor, group: Group) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks, on every rank (in place)."""
    if group.size > 1:
        dist.all_reduce(tensor)
    return tensor


def anyone(flag: bool, group: Group) -> bool:
    """Whether any rank's ``flag`` is set: every rank gets the same answer, so all stop at the same step."""
    if group.size == 1:
        return flag
    value = torch.tensor([int(flag)], device=_wire())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _wire() -> torch.device:
    """Where tensors must be for the group's collectives: nccl moves only CUDA tensors, gloo CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(part: torch.Tensor, count: int, group: Group) -> torch.Tensor:
    """All ``count`` rows of a tensor whose rows the ranks hold as :meth:`Group.share` divides them, on every rank, where ``part`` is."""
    if group.size == 1:
        return part
    largest = -(-count // group.size)
    padded = torch.zeros((largest, *part.shape[1:]), dtype=part.dtype, device=_wire())
    padded[: len(part)] = part
    pieces = [torch.empty_like(padded) for _ in range(group.size)]
    dist.all_gather(pieces, padded)
    sizes = [len(range(count)[group.share(count, rank)]) for rank in range(group.size)]
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)]).to(part.device)


def average_buffers(module: nn.Module, group: Group) -> None:
    """Make every rank's floating-point buffers (BatchNorm's running statistics) their mean over the ranks."""
    if group.size == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(group.size)


def gather_states(state: torch.Tensor, group: Group) -> list[torch.Tensor]:
    """Every rank's copy of a per-process tensor (a random generator's state), in rank order, on every rank."""
    if group.size == 1:
        return [state]
    states: list[Any] = [None] * group.size
    dist.all_gather_object(states, state)
    return states


def same_everywhere(module: nn.Module, group: Group) -> bool:
    """Whether every rank holds exactly the same parameters (a check for tests and for the curious: it costs an all-gather)."""
    if group.size == 1:
        return True
    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    pieces = [torch.empty_like(flat) for _ in range(group.size)]
    dist.all_gather(pieces, flat)
    return all(torch.equal(pieces[0], piece) for piece in pieces[1:])
