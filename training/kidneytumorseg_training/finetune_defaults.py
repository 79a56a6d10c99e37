"""Fine-tuning defaults, in one place for ``finetune()``, ``kidneytumorseg-train finetune`` and the benchmarks.

They come from benchmarks/finetune_phantom_settings.py (docs/training.md has the table): SGD at 1e-3 for a short
schedule barely moved the weights; Adam with as many replayed cases as corrections forgot part of the original
domain. This module imports nothing heavy, so the command's ``--help`` stays fast.
"""

from __future__ import annotations

EPOCHS = 20
ITERATIONS = 20  # training steps per epoch
LEARNING_RATE = 1e-3
OPTIMIZER = "adam"
REPLAY_RATIO = 2.0  # replayed cases per corrected training case: a third of the patches are corrections
HOLDOUT = 0.3  # fraction of the corrections held out to compare the old and new versions
