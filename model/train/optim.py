"""What a stage trains, the AdamW optimizer and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.model import NeoUnify
from model.train.config import TrainConfig


def trainable_parameters(model: NeoUnify, stage: int) -> list[nn.Parameter]:
    """Stage 1 trains the understanding set, stage 2 the generation set, later stages both.

    The other set is frozen (requires_grad False), so no gradient is computed for it at all.
    """
    if stage == 1:
        trained = list(model.understanding_parameters())
    elif stage == 2:
        trained = list(model.generation_parameters())
    else:
        trained = list(model.parameters())
    chosen = {id(p) for p in trained}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in chosen)
    return trained


def build_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameters,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine down to lr * min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
