"""MRML helpers of the MRML-logic tests: the sample's paths, loading a volume the way Slicer does, and a
snapshot of a scene to prove that a failed or cancelled run changed nothing."""

from __future__ import annotations

from pathlib import Path

import slicer

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "KidneyTumorSeg" / "Resources" / "SampleData" / "kits-synthetic-00112"
SAMPLE_CT = SAMPLE_DIR / "imaging.nii.gz"
SAMPLE_REFERENCE = SAMPLE_DIR / "segmentation.nii.gz"


def load_volume(scene: object, path: Path, labelmap: bool = False) -> object:
    """A volume node read from ``path`` by Slicer's archetype storage node, as File > Add Data does."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(path.name.split(".")[0])
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node), f"Slicer could not read {path}"
    node.CreateDefaultDisplayNodes()
    return node


def scene_snapshot(scene: object) -> list[tuple[str, str, int]]:
    """Every node of the scene with its modification time: equal snapshots mean an unchanged scene."""
    nodes = scene.GetNodes()
    return [(nodes.GetItemAsObject(i).GetID(), nodes.GetItemAsObject(i).GetClassName(),
             nodes.GetItemAsObject(i).GetMTime()) for i in range(nodes.GetNumberOfItems())]
