"""Evaluate a trained seisbind model: retrieval, zero-shot, probes and baselines, in one run.

    python eval_zeroshot.py --model DIR --data DIR --split test --out results.json [--plots DIR]

The same as ``seisbind evaluate``; the logic lives in ``seisbind.evaluation.cli``, this file is
the entry point the repository layout names.
"""

import sys

from seisbind.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
