"""`curation`: curate image-text sources into bucketed WebDataset shards with a per-sample manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotators.clip_config import ClipWeightsMissing
from curation.config import ConfigError, load_config
from curation.errors import OutputExistsError
from stages.sources import SourceError

EPILOG = """examples:
  curation run config.yaml                    # embedded local Ray
  curation run config.yaml --address auto     # join a running Ray cluster
  curation inspect runs/demo/curated --json
  curation report runs/demo/curated -o report.html
  curation demo --output runs/demo
"""


def cmd_run(args: argparse.Namespace) -> int:
    from curation.pipeline import Pipeline

    cfg = load_config(args.config)
    if args.output:
        cfg.output = str(Path(args.output).resolve())
    if args.address:
        cfg.ray.address = args.address
    if args.progress:
        cfg.ray.progress = args.progress
    Pipeline(cfg).run(overwrite=args.overwrite, keep_work=args.keep_work)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from manifests.inspect import inspect_command

    code, text = inspect_command(args.output, as_json=args.json, top_clusters=args.top)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def cmd_report(args: argparse.Namespace) -> int:
    from manifests.report import report_command

    code, text = report_command(args.output, args.html, args.threshold, args.calibration, args.thumb_size)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def cmd_fetch_models(args: argparse.Namespace) -> int:
    from annotators.clip_config import check_local_files, fetch_weights

    cfg = load_config(args.config)
    if not cfg.clip.enabled:
        print("clip is not enabled in this config: nothing to fetch")
        return 0
    path = fetch_weights(cfg.clip)
    check_local_files(cfg.clip)
    print(f"CLIP weights cached at {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from curation.calibration import calibrate_config

    cfg = load_config(args.config)
    out = args.output or str(Path(cfg.output) / "calibration")
    summary = calibrate_config(cfg, args.sample, out)
    for column, c in summary["columns"].items():
        drops = ", ".join(f"{r['bound']} {r['threshold']:g} drops {r['would_drop']}" for r in c["rules"]) or "no rule"
        print(f"{column:28s} scored {c['scored']:6d}  {drops}")
    print(f"histograms and keep tables: {out} (show them with: curation report OUT --calibration {out})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from curation.demo import run_demo

    return run_demo(Path(args.output), n_images=args.images, overwrite=True, address=args.address,
                    shapes=args.shapes, train_minutes=args.train_minutes, eval_prompts=args.eval_prompts)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curation", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="curate the sources of a config into shards and a manifest")
    run.add_argument("config", help="YAML config (see README: sources, output, decode, dedup, ...)")
    run.add_argument("--address", help="join a Ray cluster ('auto' or HOST:PORT) instead of an embedded one")
    run.add_argument("--output", help="override the config's output folder")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in the output folder")
    run.add_argument("--keep-work", action="store_true", help="keep the intermediate records under _work/")
    run.add_argument("--progress", choices=["auto", "bars", "lines", "off"], help="progress display")
    run.set_defaults(fn=cmd_run)

    insp = sub.add_parser("inspect", help="per-source, per-reason and per-bucket counts of a run's manifest")
    insp.add_argument("output", help="a run's output folder (works while it runs or after it failed)")
    insp.add_argument("--json", action="store_true", help="print JSON for scripts")
    insp.add_argument("--top", type=int, default=10, help="duplicate clusters to list")
    insp.set_defaults(fn=cmd_inspect)

    rep = sub.add_parser("report", help="one self-contained HTML page about a run (works while it runs or after it failed)")
    rep.add_argument("output", help="a run's output folder")
    rep.add_argument("-o", "--html", help="file to write (default OUT/report.html)")
    rep.add_argument("--threshold", action="append", default=[], metavar="COLUMN=MIN:MAX",
                     help="preview a threshold (one side may be empty); replaces the config's for that column")
    rep.add_argument("--calibration", metavar="DIR", help="folder of calibration histogram JSON files")
    rep.add_argument("--thumb-size", type=int, default=128, help="thumbnail size in pixels")
    rep.set_defaults(fn=cmd_report)

    cal = sub.add_parser("calibrate", help="score a sample and show, per filter, what each threshold would drop")
    cal.add_argument("config", help="the run config")
    cal.add_argument("--sample", type=int, default=1000, help="how many inputs to score (random partitions)")
    cal.add_argument("-o", "--output", help="folder for histograms and tables (default OUT/calibration)")
    cal.set_defaults(fn=cmd_calibrate)

    fetch = sub.add_parser("fetch-models", help="download and cache a config's model weights (needs a network)")
    fetch.add_argument("config", help="the run config whose clip: section names the weights")
    fetch.set_defaults(fn=cmd_fetch_models)

    from model.train.cli import register_commands

    register_commands(sub)  # train, sample, caption, eval

    demo = sub.add_parser("demo", help="generate a multi-source corpus with planted problems, curate it, train on it")
    demo.add_argument("--output", default="runs/demo", help="folder for the corpus and the run (replaced)")
    demo.add_argument("--images", type=int, default=120, help="base images in the generated corpus")
    demo.add_argument("--address", help="join a Ray cluster instead of an embedded one")
    demo.add_argument("--shapes", type=int, default=480, help="flat-shape scenes in the shapes source")
    demo.add_argument("--train-minutes", type=float, default=2.0,
                      help="train the tiny NEO-unify on the shards this long, then evaluate it (0: skip)")
    demo.add_argument("--eval-prompts", type=int, default=32, help="held-out shapes scenes in the eval")
    demo.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, SourceError, OutputExistsError, ClipWeightsMissing) as e:
        print(f"curation {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
