"""Exponential moving average of the generation weights: the weights images are sampled with."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from model.model import NeoUnify


def generation_parameter_names(model: NeoUnify) -> list[str]:
    generation = {id(p) for p in model.generation_parameters()}
    return [name for name, p in model.named_parameters() if id(p) in generation]


class GenerationEMA:
    def __init__(self, model: NeoUnify, decay: float) -> None:
        self.decay = decay
        parameters = dict(model.named_parameters())
        self.shadow = {
            name: parameters[name].detach().clone() for name in generation_parameter_names(model)
        }

    def decay_at(self, step: int) -> float:
        """The configured decay, lowered early on ((1 + step) / (10 + step)) so the average is not
        dominated by the random initial weights when a run is short."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: NeoUnify, step: int) -> None:
        weight = 1 - self.decay_at(step)
        parameters = dict(model.named_parameters())
        for name, average in self.shadow.items():
            average.lerp_(parameters[name].detach(), weight)

    @contextmanager
    def applied(self, model: NeoUnify) -> Iterator[None]:
        """Swap the averages into the model for the duration (sampling), then restore the weights."""
        parameters = dict(model.named_parameters())
        saved = {name: parameters[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, average in self.shadow.items():
                parameters[name].copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, weights in saved.items():
                    parameters[name].copy_(weights)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the model's generation parameters")
        for name, value in state.items():
            self.shadow[name].copy_(value)
