#!/usr/bin/env python
"""Hypertune an experiment with Ray Tune (the same as ``heartlab tune``).

    python hypertune.py configs/ptb_resnet1d.gin --num-samples 16
    python hypertune.py configs/ptb_resnet1d.gin --resume          # continue an interrupted study

The config's search section says what to sample; see heartlab/search.py and README.md.
"""

import argparse
import sys

from heartlab.errors import HeartlabError, report
from heartlab.tune import add_tune_arguments, run_from_args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hypertune.py")
    add_tune_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except HeartlabError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
