"""Training throughput of NEO-unify: tokens/s and peak memory of forward + backward + AdamW step.

CPU (tiny preset, fp32):
    .venv/bin/python bench/bench_model.py --preset tiny --device cpu
CUDA (2b shapes, fewer layers, bf16 autocast, reports MFU):
    .venv/bin/python bench/bench_model.py --preset 2b --layers 4 --device cuda --image-size 512

One step trains on a packed batch of `--pairs` image-caption pairs, each used twice (text-to-image
and image-to-text), i.e. the stage-3 mix with loss 0.1 CE + 1 MSE.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from model import (
    STAGE_LOSS_WEIGHTS,
    NeoConfig,
    NeoUnify,
    PackedBatch,
    SequenceBuilder,
    build_model,
    dense_mask,
    total_loss,
)
from model.sequence import IGNORE_INDEX, TokenRole


def make_batch(
    config: NeoConfig, pairs: int, image_size: int, caption_tokens: int, seed: int
) -> PackedBatch:
    generator = torch.Generator().manual_seed(seed)
    builder = SequenceBuilder(config)
    samples = []
    for _ in range(pairs):
        caption = torch.randint(
            0, min(config.vocab_size, 256), (caption_tokens,), generator=generator
        ).tolist()
        image = torch.rand(3, image_size, image_size, generator=generator) * 2 - 1
        samples += [builder.text_to_image(caption, image), builder.image_to_text(image, caption)]
    return builder.pack(samples, generator)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def step_flops(model: NeoUnify, batch: PackedBatch) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward); embedder convs ignored.

    Each token passes through one stream's layer weights; attention is counted only over the
    query/key pairs the mask allows.
    """
    config = model.config
    layer_params = sum(p.numel() for p in model.layers[0].understanding.parameters())
    tokens = len(batch)
    text_targets = int((batch.labels != IGNORE_INDEX).sum())
    noisy_tokens = int((batch.roles == TokenRole.NOISY_IMAGE).sum())
    head_params = sum(p.numel() for p in model.pixel_head.parameters())
    allowed_pairs = int(dense_mask(batch.mask_fields, batch.mask_fields).sum())
    forward = (
        2 * tokens * layer_params * config.num_layers
        + 2 * text_targets * config.hidden_size * config.vocab_size
        + 2 * noisy_tokens * head_params
        + 4 * allowed_pairs * config.num_heads * config.head_dim * config.num_layers
    )
    return 3.0 * forward


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--layers", type=int, help="override the preset's layer count")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--caption-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100/H200 SXM)"
    )
    return parser.parse_args()


def time_train_steps(
    model: NeoUnify, batch: PackedBatch, device: torch.device, steps: int, warmup: int
) -> list[float]:
    """Seconds per step of forward + backward + clip + AdamW (bf16 autocast on CUDA)."""
    on_cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=on_cuda
    )

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            loss = total_loss(model(batch), STAGE_LOSS_WEIGHTS[3])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        train_step()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = {"num_layers": args.layers} if args.layers else {}
    config = NeoConfig.preset(args.preset, **overrides)
    rss_before = peak_rss_mib()
    torch.manual_seed(0)
    model = build_model(config, device=device)
    batch = make_batch(config, args.pairs, args.image_size, args.caption_tokens, seed=0)
    batch = batch.to(device)
    durations = time_train_steps(model, batch, device, args.steps, args.warmup)

    step, fastest, slowest = statistics.median(durations), min(durations), max(durations)
    tokens = len(batch)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    loads = "/".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"preset={args.preset} layers={config.num_layers} device={device}")
    print(f"threads={torch.get_num_threads()} load average (1/5/15 min)={loads}")
    print(f"params={params_m:.2f}M tokens/step={tokens}")
    print(
        f"batch: {args.pairs} pairs x (t2i + i2t), {args.image_size} px, {args.caption_tokens} tok"
    )
    print(f"step median={step * 1e3:.1f} ms (min {fastest * 1e3:.1f}, max {slowest * 1e3:.1f})")
    # The fastest step is the least disturbed by other processes on a shared machine.
    print(f"throughput={tokens / step:,.0f} tokens/s (fastest step: {tokens / fastest:,.0f})")
    print(f"peak RSS={peak_rss_mib():.0f} MiB (before model: {rss_before:.0f} MiB)")
    if device.type == "cuda":
        print(f"peak CUDA allocated={torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        achieved = step_flops(model, batch) / step / 1e12
        print(f"model TFLOP/s={achieved:.1f} MFU={achieved / args.peak_tflops:.1%}")


if __name__ == "__main__":
    main()
