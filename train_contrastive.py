"""Contrastive training of the joint image-waveform model (issue 5: not built yet)."""

import sys

from seisbind.unbuilt import not_built

if __name__ == "__main__":
    sys.exit(not_built("train_contrastive.py"))
