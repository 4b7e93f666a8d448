"""The NEO-unify trainer: curated shards -> epoch-planned packed batches -> staged training.

Modules: config (YAML settings) -> tokenizer -> shard_index, plan, data (loader) -> objective,
optim, ema, distributed -> checkpointing, metrics, plots, preview -> trainer -> sampling, cli;
shapes, shapes_judge, shapes_eval (the CPU task that proves learning).
"""
