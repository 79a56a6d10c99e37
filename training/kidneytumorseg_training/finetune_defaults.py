"""Fine-tuning defaults, in one place for ``finetune()``, ``kidneytumorseg-train finetune`` and the benchmarks.

The learning rate and replay ratio come from benchmarks/finetune_shifted_domain.py on synthetic CT (docs/training.md
has both tables): with Adam at 1e-3 and two replayed cases per correction the shifted-domain tumor was learned but the
original domain's tumor Dice fell by 0.096; at 3e-4 with four replayed cases both goals were met. That was on
the under-trained kits-demo 1.0.0: on the trained 1.3.0 and 1.4.0 every setting measured so far forgets more than
0.02 of the original domain or learns too little of the new one (docs/training.md, section 5). The phantoms of
benchmarks/finetune_phantom_settings.py agree that SGD at 1e-3 for a short schedule barely moves the weights, and
that fewer replayed cases forget more. This module imports nothing heavy, so the command's ``--help`` stays fast.
"""

from __future__ import annotations

EPOCHS = 20
ITERATIONS = 20  # training steps per epoch
LEARNING_RATE = 3e-4
OPTIMIZER = "adam"
# Dice over the whole batch (nnU-Net's 3d_fullres setting), as every bundled member was trained, so that a fine-tune
# optimises the loss its parent was trained with. The stop-26 runs (docs/training.md) did not show that this alone
# stops the forgetting on a trained model.
BATCH_DICE = True
# Patch sampling: with HARD_CASE_CLASS c and HARD_CASE_FRACTION f, a share f of the patches is centred on label c
# (sampling.py). None / 0.0: foreground oversampling only.
HARD_CASE_CLASS: int | None = None
HARD_CASE_FRACTION = 0.0
# L2-SP (weight_anchor.py): each step pulls the weights back toward the parent's by ANCHOR_STRENGTH * (w - w_parent);
# 0.0 = off.
ANCHOR_STRENGTH = 0.0
REPLAY_RATIO = 4.0  # replayed cases per corrected training case: a fifth of the patches are corrections
HOLDOUT = 0.3  # fraction of the corrections held out to compare the old and new versions
# Share of the fine-tuned weights in the new version: (1 - A) * parent + A * fine-tuned (WiSE-FT, weight_averaging.py);
# 1.0 = no averaging.
AVERAGE_FRACTION = 1.0
