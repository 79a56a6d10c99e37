"""PyTorch DDP set-up from ``torchrun``'s environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

Without those variables everything here is a no-op, so the trainer has one code path. The backend is NCCL
when training on CUDA and gloo otherwise (CPU processes, as the two-process test uses).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kidneytumorseg.device import select_device

LOGGER = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    active: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # The coarsest deep-supervision head has loss weight 0 (nnU-Net), so its parameters get no gradient.
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over the ranks (a copy; the input is left alone)."""
        if not self.active:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def parameters_agree(self, model: torch.nn.Module) -> bool:
        """Whether every rank holds the same parameters (sum, sum of squares and max compared exactly)."""
        if not self.active:
            return True
        flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        summary = torch.stack([flat.sum(), (flat * flat).sum(), flat.abs().max()]).to(self.device)
        gathered = [torch.zeros_like(summary) for _ in range(self.world_size)]
        dist.all_gather(gathered, summary)
        return all(torch.equal(gathered[0], other) for other in gathered[1:])

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shutdown(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
            self.active = False


def init_from_environment(requested_device: str = "auto") -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(requested_device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    LOGGER.info("DDP rank %d/%d on %s (%s)", rank, world_size, device, backend)
    return DistributedContext(rank, world_size, local_rank, device, True)
