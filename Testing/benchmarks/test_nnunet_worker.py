"""The nnU-Net worker's guard: torchvision cannot be imported in its process (its compiled ops do not load with
the project's CPU torch); nnU-Net's trainer and predictor run without it (the slow end-to-end test in
test_nnunet_peer_training.py)."""

from __future__ import annotations

import sys

import pytest
from equal_budget import nnunet_worker
from nnunet_peer_training import TRAINER_FOLDER


@pytest.fixture
def restored_meta_path():
    saved = list(sys.meta_path)
    yield
    sys.meta_path[:] = saved


@pytest.mark.usefixtures("restored_meta_path")
def test_the_worker_blocks_torchvision_with_the_shared_guard():
    from peer_comparison import torchvision_guard

    assert nnunet_worker.block_torchvision is torchvision_guard.block_torchvision


def test_model_folder_is_nnunet_layout(monkeypatch, tmp_path):
    pytest.importorskip("nnunetv2", reason="needs the peers extra (nnunetv2)")
    import nnunetv2.paths

    monkeypatch.setattr(nnunetv2.paths, "nnUNet_results", str(tmp_path))
    folder = nnunet_worker.model_folder("Dataset501_K")
    assert folder == tmp_path / "Dataset501_K" / "EqualBudgetTrainer__nnUNetPlans__3d_fullres"
    assert folder.name == TRAINER_FOLDER  # where the orchestrator looks for finished folds
