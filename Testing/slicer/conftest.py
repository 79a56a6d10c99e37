"""Fixtures of the MRML-logic tests: a real MRML scene (slicer-core), the sample CT loaded through a storage
node, and a model store with the bundled packages and an empty per-test user folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import slicer
from mrml_helpers import SAMPLE_CT, load_volume

from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from KidneyTumorSegLib.engine_command import EngineCommand
from KidneyTumorSegLib.segments import register_segmentation_converters


@pytest.fixture
def scene() -> object:
    register_segmentation_converters()
    return slicer.vtkMRMLScene()


@pytest.fixture
def ct_node(scene: object) -> object:
    return load_volume(scene, SAMPLE_CT)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(default_bundled_dir(), tmp_path / "user-models")


@pytest.fixture
def command(store: ModelStore) -> EngineCommand:
    """Engine runs with this interpreter, two torch threads, and the test's model store."""
    return EngineCommand(python=sys.executable, models_dir=store.user_dir, threads=2)
