"""Fine-tuning on corrections helps where the model fails and keeps what it knew: the tiny CPU version of issue 4's
shifted-domain experiment (benchmarks/finetune_shifted_domain.py is the full one).

A tiny random package is first trained on phantoms of an "original" domain (hypo-enhancing tumor), then
fine-tuned on corrected cases of a "shifted" domain (hyper-enhancing tumor, more noise,
an offset calibration; see kidneytumorseg_training.synthetic.domain_phantoms), with original cases replayed.
The original model calls the shifted tumor kidney. About 5 minutes on one CPU thread in float32.
benchmarks/finetune_phantom_settings.py compares other settings on the same phantoms.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kidneytumorseg_training import finetune_defaults as defaults
from kidneytumorseg_training.finetune import finetune
from kidneytumorseg_training.finetune_data import FinetuneError
from kidneytumorseg_training.synthetic.domain_phantoms import mean_dice, random_store, write_cases

ORIGINAL_TEST_SEEDS = range(200, 206)  # never trained on
# The fine-tune: Adam at 1e-3 (the default optimizer) for 60 x 20 steps, replay 1:1, distillation at the default.
# How fast this tiny network learns the shifted tumor depends on the machine. Up to stop 32 the test fine-tuned with
# Adam 1e-3 for 40 x 20 steps at replay 4:1; it passed on CPUs with native bfloat16 (training in bfloat16) and
# failed on a float32-only CPU (AMD EPYC), where that setting gave Dice 0.0 for three seeds, replay 1:1 for 40 x 20
# gave 0.75 / 0.10 / 0.82 and replay 1:1 for 60 x 20 0.81 / 0.91 / 0.90
# (benchmarks/results/finetune_phantom_settings.txt; its bfloat16 rows are older and used other defaults). So the
# test uses the last one; the cause of the difference (most likely the precision) is not isolated.


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("domain_shift")
    store = random_store(root, "tiny")
    original = write_cases(root / "original", range(10), "original")
    trained = finetune("tiny@1.0.0", original, holdout=0.2, epochs=15, iterations=20, learning_rate=1e-2,
                       optimizer="adam", store=store, work_dir=root / "train", seed=0, threads=1)
    corrections = write_cases(root / "corrections", range(100, 108), "shifted")
    # Not the defaults' 1e-4 and 4:1: the tiny 6 mm phantom network learns the shifted tumor all at once after a
    # number of steps that depends on the rate, the replay ratio and the precision (comment at ORIGINAL_TEST_SEEDS).
    tuned = finetune(f"tiny@{trained.version}", corrections, replay=original, holdout=0.5, store=store,
                     epochs=60, iterations=defaults.ITERATIONS, learning_rate=1e-3, optimizer=defaults.OPTIMIZER,
                     replay_ratio=1.0, work_dir=root / "finetune", seed=0, threads=1)
    return {"store": store, "trained": trained, "tuned": tuned, "root": root}


def test_the_starting_model_knows_the_original_domain_and_misses_the_shifted_tumor(shifted):
    assert shifted["trained"].after["regions"]["tumor"]["dice"] > 0.7
    assert shifted["tuned"].before["regions"]["tumor"]["dice"] < 0.2
    assert shifted["tuned"].before["regions"]["kidney_and_mass"]["dice"] > 0.8


def test_finetuning_raises_the_held_out_shifted_tumor_dice(shifted):
    tuned = shifted["tuned"]
    before, after = tuned.before["regions"]["tumor"]["dice"], tuned.after["regions"]["tumor"]["dice"]
    assert after >= before + 0.10, (before, after)
    kidney = tuned.before["regions"]["kidney_and_mass"]["dice"], tuned.after["regions"]["kidney_and_mass"]["dice"]
    assert kidney[1] >= kidney[0] - 0.02, kidney


def test_the_original_domain_is_kept(shifted):
    store, old, new = shifted["store"], shifted["trained"].version, shifted["tuned"].version
    before = mean_dice(store, f"tiny@{old}", ORIGINAL_TEST_SEEDS, "original")
    after = mean_dice(store, f"tiny@{new}", ORIGINAL_TEST_SEEDS, "original")
    assert before["tumor"] > 0.7, before  # the comparison means something only if the old model knew it
    assert after["kidney_and_mass"] >= before["kidney_and_mass"] - 0.02, (before, after)
    # Phantoms of 6 cases at 6 mm, one seed: mean over the regions within 0.05 (the full benchmark asks 0.02).
    assert np.mean(list(after.values())) >= np.mean(list(before.values())) - 0.05, (before, after)


def test_distillation_runs_on_the_replayed_cases_only_and_needs_replay(shifted, tmp_path):
    store, old = shifted["store"], shifted["tuned"].version
    corrections = shifted["tuned"].package_path.parent  # any folder: refused before it is read
    with pytest.raises(FinetuneError, match="distill_weight distils the parent on the replayed cases.*--replay"):
        finetune(f"tiny@{old}", corrections, distill_weight=1.0, store=store, work_dir=tmp_path / "refused")
    with pytest.raises(FinetuneError, match="distill_weight must be a number >= 0"):
        finetune(f"tiny@{old}", corrections, replay=corrections, distill_weight=-1.0, store=store,
                 work_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    root = shifted["root"]
    result = finetune(f"tiny@{old}", root / "corrections", replay=root / "original", holdout=0.5, epochs=1,
                      iterations=2, distill_weight=2.0, store=store, work_dir=tmp_path / "work", seed=0, threads=1)
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert shifted["tuned"].package_path.is_dir()
    default = json.loads((shifted["root"] / "finetune" / "report.json").read_text())["settings"]["distill_weight"]
    assert default == defaults.DISTILL_WEIGHT  # with replay data the fixture's fine-tune distils by default
    member = store.resolve(f"tiny@{old}").segmenters[0].name
    config = json.loads((tmp_path / "work" / "runs" / member / "config.json").read_text())
    assert config["distill_weight"] == 2.0 == store.resolve(f"tiny@{result.version}").provenance["settings"][
        "distill_weight"]
    # the parent's output is kept on the replayed cases only: never on a correction the fine-tune learns from
    assert report["replay_ids"] and sorted(config["distill_ids"]) == report["replay_ids"]
    assert not set(config["distill_ids"]) & set(result.train_ids) and set(result.train_ids) <= set(config["train_ids"])
