"""The training loop: stage-selected losses, AdamW with warm-up + cosine, EMA, checkpoints, logs.

Read top to bottom: `build_neo_model` -> `Trainer.__init__` (model, optimizer, EMA, resume) ->
`run` (the loop) -> `train_step` -> `forward_backward` / `optimizer_step` -> `after_step` (metrics,
sample grids, checkpoints). Every source of randomness in a step comes from the epoch plan's
per-sample seeds, so a resumed run (weights, optimizer, step and data position restored) continues
exactly where the uninterrupted one would be.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from model.config import NeoConfig
from model.losses import STAGE_LOSS_WEIGHTS
from model.model import NeoUnify, build_model
from model.qwen3 import from_qwen3
from model.train.checkpointing import (
    TrainingState,
    capture_rng,
    checkpoint_path,
    list_checkpoints,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
)
from model.train.config import TrainConfig
from model.train.data import TrainBatch, make_loader
from model.train.distributed import DistContext, all_reduce_sum, init_distributed, shutdown, sum_gradients
from model.train.ema import GenerationEMA
from model.train.metrics import MetricsLog, read_metrics
from model.train.objective import LossShare, empty_breakdown, loss_share, weight_totals
from model.train.optim import build_optimizer, learning_rate, set_learning_rate, trainable_parameters
from model.train.plan import DataPosition, PlanSettings
from model.train.plots import plot_loss_curves
from model.train.preview import PreviewSet, load_preview_set, render_preview
from model.train.tokenizer import Tokenizer, adopt_tokenizer, check_tokenizer, load_tokenizer

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT_FILE = "loss.png"
SAMPLES_DIR = "samples"


def build_neo_model(config: TrainConfig, tokenizer: Tokenizer, device: torch.device) -> NeoUnify:
    """From Qwen3 weights when configured, else the preset sized for the tokenizer; the init is seeded,
    so every rank of a data-parallel run starts from the same weights."""
    torch.manual_seed(config.seed)
    settings = config.model
    if settings.qwen3 is not None:
        model = from_qwen3(
            settings.qwen3, generation_init=settings.generation_init, device=device, **settings.overrides
        )
        check_tokenizer(model.config, tokenizer)
        return model
    neo_config = adopt_tokenizer(NeoConfig.preset(settings.preset, **settings.overrides), tokenizer)
    return build_model(neo_config, device=device)


class Trainer:
    def __init__(self, config: TrainConfig, context: DistContext, resume: bool = False) -> None:
        self.config = config
        self.context = context
        self.device = context.device
        self.output = config.output_dir
        if config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        self.tokenizer = load_tokenizer(config.tokenizer_path)
        self.model = build_neo_model(config, self.tokenizer, self.device)
        self.loss_weights = STAGE_LOSS_WEIGHTS[config.stage]
        self.trainable = trainable_parameters(self.model, config.stage)
        self.optimizer = build_optimizer(self.trainable, config)
        self.ema = GenerationEMA(self.model, config.ema_decay)
        self.step = 0
        self.position = DataPosition()
        self._resume_or_start_fresh(resume)
        self.metrics = MetricsLog(self.output / METRICS_FILE, self.step) if context.is_main else None
        self.preview: PreviewSet | None = None
        if context.is_main and config.samples.every:
            self.preview = load_preview_set(config.data, config.samples)

    # Starting --------------------------------------------------------------------------------

    def _resume_or_start_fresh(self, resume: bool) -> None:
        existing = list_checkpoints(self.output)
        if existing and not resume:
            raise FileExistsError(f"{self.output} already holds checkpoints: pass --resume or pick another output")
        if resume and existing:
            self.restore(existing[-1])

    def restore(self, path: Path) -> None:
        state = load_training_checkpoint(path, self.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.ema.load_state_dict(state.ema)
        self.step = state.step
        self.position = DataPosition.from_dict(state.data_position)
        restore_rng(state.rng)

    # The loop --------------------------------------------------------------------------------

    def run(self) -> None:
        loader = make_loader(
            self.config.data,
            self.tokenizer,
            self.model.config,
            PlanSettings(self.config.batch_size, self.config.tasks, self.config.seed),
            max_text_tokens=self.config.max_text_tokens,
            num_workers=self.config.loader_workers,
            timesteps=self.config.timesteps,
            rank=self.context.rank,
            world_size=self.context.world_size,
            start=self.position,
            only_buckets=self.config.buckets,
        )
        batches = iter(loader)
        run_started = time.perf_counter()
        while self.step < self.config.steps and not self.out_of_time(run_started):
            started = time.perf_counter()
            record = self.train_step(next(batches))
            record["step_time_s"] = round(time.perf_counter() - started, 4)
            self.after_step(record)
        if not checkpoint_path(self.output, self.step).exists():
            self.save()
        # A run cut short by max_minutes still ends with a picture of where it got to.
        if self.preview is not None and not self.grid_path().exists():
            self.sample_grid()
        self.plot_losses()

    def out_of_time(self, run_started: float) -> bool:
        """Whether max_minutes has passed on any rank (all ranks must stop at the same step)."""
        if self.config.max_minutes is None:
            return False
        late = float(time.perf_counter() - run_started > 60 * self.config.max_minutes)
        return bool(all_reduce_sum(torch.tensor([late], device=self.device), self.context) > 0)

    def train_step(self, batch: TrainBatch) -> dict[str, Any]:
        lr = learning_rate(self.step, self.config)
        set_learning_rate(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        share, totals, counts = self.forward_backward(batch)
        grad_norm = self.optimizer_step()
        self.ema.update(self.model, self.step)
        self.step += 1
        self.position = batch.next_position
        record = self.step_record(share, totals, counts)
        record.update(lr=lr, grad_norm=grad_norm, epoch=batch.position.epoch)
        return record

    def forward_backward(self, batch: TrainBatch) -> tuple[LossShare, torch.Tensor, torch.Tensor]:
        """This rank's loss share, backpropagated; returns it with the global weight totals and the
        global [samples, tokens] of the step."""
        if batch.packed is None:
            losses = empty_breakdown(self.device)
            tokens = 0
        else:
            packed = batch.packed.to(self.device)
            tokens = len(packed)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                losses = self.model(packed)
        local_totals = weight_totals(losses)
        global_totals = all_reduce_sum(local_totals.clone(), self.context)
        share = loss_share(losses, self.loss_weights, local_totals, global_totals)
        if share.loss.requires_grad:
            share.loss.backward()
        counts = all_reduce_sum(torch.tensor([len(batch.keys), tokens], device=self.device), self.context)
        return share, global_totals, counts

    def optimizer_step(self) -> float:
        """Sum gradients over ranks, clip the global norm, step; returns the norm before clipping."""
        sum_gradients(self.trainable, self.context)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip)
        self.optimizer.step()
        return float(grad_norm)

    def step_record(self, share: LossShare, totals: torch.Tensor, counts: torch.Tensor) -> dict[str, Any]:
        """The step's global loss, CE and MSE (means over the whole global batch) and bookkeeping."""
        summed = all_reduce_sum(
            torch.stack((share.loss.detach(), share.ce_numerator, share.mse_numerator)), self.context
        ).tolist()
        record: dict[str, Any] = {"step": self.step, "loss": summed[0]}
        if totals[0] > 0:
            record["ce"] = summed[1] / float(totals[0])
        if totals[1] > 0:
            record["mse"] = summed[2] / float(totals[1])
        record.update(samples=int(counts[0]), tokens=int(counts[1]))
        return record

    # Bookkeeping -----------------------------------------------------------------------------

    def after_step(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.append(record)
        every = self.config.samples.every
        if self.preview is not None and every and self.step % every == 0:
            self.sample_grid()
            self.plot_losses()
        if self.step % self.config.checkpoint_every == 0:
            self.save()

    def grid_path(self) -> Path:
        return self.output / SAMPLES_DIR / f"step_{self.step:06d}.png"

    def sample_grid(self) -> None:
        path = self.grid_path()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            render_preview(self.model, self.tokenizer, self.ema, self.preview, self.config.samples, path)

    def plot_losses(self) -> None:
        if self.context.is_main:
            plot_loss_curves(read_metrics(self.output / METRICS_FILE), self.output / LOSS_PLOT_FILE)

    def save(self) -> None:
        if not self.context.is_main:
            return
        state = TrainingState(
            step=self.step,
            data_position=self.position.to_dict(),
            optimizer=self.optimizer.state_dict(),
            ema=self.ema.state_dict(),
            schedule={"step": self.step, "lr": learning_rate(self.step, self.config)},
            rng=capture_rng(),
            train_config=self.config.model_dump(mode="json"),
        )
        save_training_checkpoint(self.output, self.model, state, self.config.keep_checkpoints)


def train(config: TrainConfig, resume: bool = False) -> None:
    """Train on this process, or on this rank when started by torchrun."""
    context = init_distributed(config.device)
    try:
        Trainer(config, context, resume).run()
    finally:
        shutdown(context)
