"""Fine-tuning defaults, in one place for ``finetune()``, ``kidneytumorseg-train finetune`` and the benchmarks.

They come from benchmarks/finetune_shifted_domain.py on synthetic CT (docs/training.md, section 5, has the tables;
every run is in benchmarks/results/finetune_shifted_domain.txt). On the trained kits-demo 1.4.0, fine-tuned on 8
corrected cases of a shifted domain (tumors brighter than the kidney): Adam at 1e-4 for 40 epochs of 20 steps, four
replayed cases per correction, a third of the patches centred on a cyst (as every bundled member was trained) and
batch Dice gave the best trade measured: on 44 held-out cases and three seeds, shifted tumor Dice +0.118 to +0.209
while the original domain lost 0.041 to 0.047 (tumor) and 0.018 to 0.033 (mass), short of the goal (at most 0.02
lost; benchmarks/results/finetune_wider_evaluation.txt). No setting measured gained 0.10 while losing at most 0.02:
no shorter schedule (20 x 20, 5e-5 to 3e-4, with or without the cyst sampling, an L2-SP anchor), no weight averaging
with the parent (0.5 and 0.75 move along the same trade), no doubling of the corrections (it forgot more), and
twice the replay for 40 x 20 at 2e-4 did not learn the new domain. On a scanner shift (noise 55 HU, blur, +20 HU;
stop 29) these defaults lost almost nothing on 44 original cases (tumor -0.003) but gained only +0.031; 2e-4 and 3e-4
gained no more and lost 0.012 and 0.022. The phantoms of benchmarks/finetune_phantom_settings.py
agree that SGD at 1e-3 for a short schedule barely moves the weights, and that fewer replayed cases forget more.
This module imports nothing heavy, so the command's ``--help`` stays fast.
"""

from __future__ import annotations

EPOCHS = 40
ITERATIONS = 20  # training steps per epoch
LEARNING_RATE = 1e-4
OPTIMIZER = "adam"
# Dice over the whole batch (nnU-Net's 3d_fullres setting), as every bundled member was trained, so that a fine-tune
# optimises the loss its parent was trained with.
BATCH_DICE = True
# Patch sampling: with HARD_CASE_CLASS c and HARD_CASE_FRACTION f, a share f of the patches is centred on label c
# (sampling.py). The bundled kits-demo members (1.3.0 on) were trained with cysts (3) at 0.33, and fine-tuning them
# without it forgot 0.013 to 0.039 more (stop 27). For a package trained without hard cases, give
# --hard-case-fraction 0 (finetune(hard_case_fraction=0.0)).
HARD_CASE_CLASS: int | None = 3
HARD_CASE_FRACTION = 0.33
# L2-SP (weight_anchor.py): each step pulls the weights back toward the parent's by ANCHOR_STRENGTH * (w - w_parent);
# 0.0 = off. At 0.1 it halved the gain and the loss alike; at 0.01 it changed nothing (stop 27).
ANCHOR_STRENGTH = 0.0
# Distillation from the parent on the replayed cases' patches (replay_distillation.py): the loss gains
# DISTILL_WEIGHT x KL(parent || member) there; 0.0 = off.
DISTILL_WEIGHT = 0.0
REPLAY_RATIO = 4.0  # replayed cases per corrected training case: a fifth of the patches are corrections
HOLDOUT = 0.3  # fraction of the corrections held out to compare the old and new versions
# Share of the fine-tuned weights in the new version: (1 - A) * parent + A * fine-tuned (WiSE-FT, weight_averaging.py);
# 1.0 = no averaging.
AVERAGE_FRACTION = 1.0
