"""Data parallelism by hand: torchrun sets the environment, gradients are summed with one all-reduce.

Manual all-reduce rather than DDP because a rank's share of a batch may hold no generated image (or
no text, or nothing at all for a short last batch): every trainable gradient is materialised (zeros
when unused) and summed, which DDP's unused-parameter machinery would complicate. gloo on CPU, NCCL
on GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(setting: Literal["auto", "cpu", "cuda"], local_rank: int) -> torch.device:
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_distributed(device_setting: Literal["auto", "cpu", "cuda"]) -> DistContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a lone process needs none."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_setting, local_rank)
    if world_size == 1:
        return DistContext(0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), world_size, device)


def shutdown(context: DistContext) -> None:
    if context.world_size > 1:
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum over ranks, in place; returns the tensor."""
    if context.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_gradients(parameters: list[nn.Parameter], context: DistContext) -> None:
    """Give every parameter a gradient (zeros where unused) and sum them over ranks in one call.

    The zeros are materialised in a single process too, so one process and N processes apply the
    same AdamW update (AdamW skips a parameter whose grad is None but moves one whose grad is 0).
    """
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    if context.world_size == 1:
        return
    grads = [parameter.grad for parameter in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()
