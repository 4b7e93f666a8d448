"""`python -m model.train CONFIG [--resume]`: the training entry point torchrun can start directly
(`torchrun --nproc_per_node 2 -m model.train CONFIG`)."""

import sys

from model.train.cli import main

sys.exit(main(sys.argv[1:]))
