"""Retrieval, zero-shot and probe evaluation of a trained model (issue 6: not built yet)."""

import sys

from seisbind.unbuilt import not_built

if __name__ == "__main__":
    sys.exit(not_built("eval_zeroshot.py"))
