"""The fine-tuning command and the ``finetune()`` API start from the same defaults (finetune_defaults.py)."""

from __future__ import annotations

import argparse
import inspect

from kidneytumorseg_training import finetune_defaults as defaults
from kidneytumorseg_training.cli import finetune as finetune_cli
from kidneytumorseg_training.finetune import finetune


def test_the_command_and_the_api_share_the_defaults():
    parser = argparse.ArgumentParser()
    finetune_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["finetune", "--model", "kits-demo", "--corrections", "corrections"])
    api = inspect.signature(finetune).parameters
    pairs = {"epochs": "epochs", "iterations": "iterations", "lr": "learning_rate", "optimizer": "optimizer",
             "replay_ratio": "replay_ratio", "holdout": "holdout", "average_with_parent": "average_fraction",
             "hard_case_class": "hard_case_class", "hard_case_fraction": "hard_case_fraction",
             "anchor_strength": "anchor_strength", "distill_weight": "distill_weight"}
    for option, parameter in pairs.items():
        assert getattr(args, option) == api[parameter].default, option
    assert (not args.sample_dice) is api["batch_dice"].default is defaults.BATCH_DICE
    with_sample_dice = parser.parse_args(["finetune", "--model", "kits-demo", "--corrections", "c", "--sample-dice"])
    assert with_sample_dice.sample_dice
    assert (args.hard_case_class, args.hard_case_fraction) == (defaults.HARD_CASE_CLASS, defaults.HARD_CASE_FRACTION)
    cysts = parser.parse_args(["finetune", "--model", "kits-demo", "--corrections", "c", "--hard-case-class", "3",
                               "--hard-case-fraction", "0.33"])
    assert (cysts.hard_case_class, cysts.hard_case_fraction) == (3, 0.33)
    assert args.anchor_strength == defaults.ANCHOR_STRENGTH
    assert parser.parse_args(["finetune", "--model", "m", "--corrections", "c", "--anchor-strength", "0.1"]
                             ).anchor_strength == 0.1
    # distillation works on replayed cases: the default weight with replay data, off without, as asked if given
    assert args.distill_weight is None is api["distill_weight"].default
    assert defaults.distill_weight_for(None, replay=True) == defaults.DISTILL_WEIGHT == 5.0
    assert defaults.distill_weight_for(None, replay=False) == 0.0 and defaults.distill_weight_for(0.0, True) == 0.0
    assert parser.parse_args(["finetune", "--model", "m", "--corrections", "c", "--distill-weight", "2"]
                             ).distill_weight == 2.0
    assert (args.epochs, args.iterations, args.lr, args.optimizer, args.replay_ratio, args.holdout) == (
        defaults.EPOCHS, defaults.ITERATIONS, defaults.LEARNING_RATE, defaults.OPTIMIZER, defaults.REPLAY_RATIO,
        defaults.HOLDOUT)
