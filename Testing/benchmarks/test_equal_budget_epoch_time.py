"""Training time from the trainers' own epoch times: stages add up, a resumed epoch counts once, a paused epoch
does not inflate it."""

from __future__ import annotations

import json

import pytest
from equal_budget.epoch_time import nnunet_training_seconds, recipe_training_seconds


def _history(folder, entries):
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(entries))


def test_recipe_stages_add_up_and_a_repeated_epoch_counts_once(tmp_path):
    _history(tmp_path / "kidney" / "fold0", [{"epoch": 1, "seconds": 10.0}, {"epoch": 2, "seconds": 12.0}])
    _history(tmp_path / "tumor" / "fold0", [{"epoch": 1, "seconds": 4.0}, {"epoch": 1, "seconds": 5.0},
                                            {"epoch": 2, "seconds": 6.0}, {"epoch": 3, "seconds": 7.0}])
    assert recipe_training_seconds(tmp_path) == pytest.approx(2 * 11 + 3 * 6)


def test_an_epoch_that_stood_paused_does_not_inflate_the_time(tmp_path):
    _history(tmp_path / "fold0", [{"epoch": 1, "seconds": 1153.0}] + [{"epoch": e, "seconds": 8.0}
                                                                        for e in range(2, 18)])
    assert recipe_training_seconds(tmp_path) == pytest.approx(17 * 8.0)


def test_recipe_without_history_is_unknown(tmp_path):
    assert recipe_training_seconds(tmp_path / "missing") is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text("{half-written")
    assert recipe_training_seconds(tmp_path) is None


def test_nnunet_resumed_run_counts_the_interrupted_epoch_once(tmp_path):
    (tmp_path / "training_log_2026_11_22_18_22_31.txt").write_text(
        "2026-11-22 19:19:08.5: Epoch 13 \n2026-11-22 19:19:09.0: Current learning rate: 0.002\n"
        "2026-11-22 19:21:26.0: Epoch time: 137.52 s \n"
        "2026-11-22 19:21:27.3: Epoch 14 \n2026-11-22 19:24:10.9: Epoch time: 163.6 s \n"
        "2026-11-22 19:24:13.0: Epoch 15 \n")  # killed during epoch 15
    (tmp_path / "training_log_2026_11_22_19_53_57.txt").write_text(
        "2026-11-22 19:53:59.3: Epoch 15 \n2026-11-22 19:56:10.0: Epoch time: 120.0 s \n"
        "2026-11-22 19:56:11.0: Epoch 16 \n2026-11-22 19:58:11.0: Epoch time: 100.5 s \n")
    assert nnunet_training_seconds(tmp_path) == pytest.approx(4 * (120.0 + 137.52) / 2)
    assert nnunet_training_seconds(tmp_path / "fold_9") is None
