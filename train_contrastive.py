"""Contrastive training of the joint image-waveform model with Accelerate.

    python train_contrastive.py --config configs/quickstart.yaml [key=value ...]
    accelerate launch train_contrastive.py --config configs/sfm-seislm-base.yaml [key=value ...]
    python train_contrastive.py --config configs/quickstart.yaml --resume latest

The same as ``seisbind train``; the logic lives in ``seisbind.training``, this file is the entry point
the repository layout names.
"""

import sys

from seisbind.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
