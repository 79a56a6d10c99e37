"""A tiny KiTS-layout dataset for the recipe tests, and the check every recipe test makes: train at the smoke
budget, export, segment through the engine.

The two committed synthetic cases are cropped to their kidney that holds a tumor and a cyst, with a margin
(about 13 x 11 x 10 cm and 11 x 9 x 11 cm): small enough that any recipe's spacing gives volumes of a few dozen
voxels a side, so preprocessing, training and prediction take seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fixture_cases import SAMPLE_CASES, SAMPLE_DIR
from safetensors import safe_open
from safetensors.torch import save_file
from scipy import ndimage

from kidneytumorseg.model_package import MANIFEST_NAME, ModelPackage, file_sha256
from kidneytumorseg.predictor import PredictionOptions, Predictor

MARGIN = 4  # voxels around the kidney


def _kidney_with_tumor_box(label: np.ndarray) -> tuple[slice, ...]:
    components, _ = ndimage.label(label > 0)
    boxes = ndimage.find_objects(components)
    chosen = next(i for i, box in enumerate(boxes) if np.any(label[box][components[box] == i + 1] == 2))
    return tuple(slice(max(0, s.start - MARGIN), min(n, s.stop + MARGIN))
                 for s, n in zip(boxes[chosen], label.shape, strict=True))


def write_tiny_kits_dataset(folder: Path) -> Path:
    """``folder/case_00112`` and ``folder/case_00161`` (imaging + segmentation), cropped around a kidney."""
    for case in SAMPLE_CASES:
        image = sitk.ReadImage(str(SAMPLE_DIR / case / "imaging.nii.gz"))
        label = sitk.ReadImage(str(SAMPLE_DIR / case / "segmentation.nii.gz"))
        box = _kidney_with_tumor_box(sitk.GetArrayViewFromImage(label))
        index = [s.start for s in reversed(box)]
        size = [s.stop - s.start for s in reversed(box)]
        (folder / case).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.RegionOfInterest(image, size, index), str(folder / case / "imaging.nii.gz"))
        sitk.WriteImage(sitk.RegionOfInterest(label, size, index), str(folder / case / "segmentation.nii.gz"))
    return folder


def assert_segments_like_its_input(package: Path, dataset: Path, members: int = 1,
                                   cases: tuple[str, ...] = ("case_00161",)) -> ModelPackage:
    """Segment ``cases`` of ``dataset`` with ``package`` through the engine's predictor (all segmenter members):
    the labels are on the input's exact grid and in 0..3. Returns the loaded package."""
    loaded = ModelPackage.load(package)
    assert len(loaded.segmenters) == members
    predictor = Predictor(loaded, PredictionOptions(quality="default", device="cpu"))
    assert len(predictor.members) == members
    for case in cases:
        image = sitk.ReadImage(str(dataset / case / "imaging.nii.gz"))
        result = predictor.segment(image)
        labels = result.labels
        assert labels.GetSize() == image.GetSize()
        assert labels.GetSpacing() == image.GetSpacing()
        assert labels.GetOrigin() == image.GetOrigin()
        assert labels.GetDirection() == image.GetDirection()
        values = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist())
        assert values <= {0, 1, 2, 3}, values
    return loaded


def biased_copy(package: Path, folder: Path, biases: dict[str, dict[int, float]]) -> Path:
    """A copy of ``package`` in ``folder`` whose members named in ``biases`` get ``value`` added to the bias of
    output channel ``channel`` of their full-resolution head (``{member: {channel: value}}``), with the manifest's
    sha256 updated: a smoke-trained member made to say one class everywhere, to show where its output goes."""
    shutil.copytree(package, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    members = {member["name"]: member for member in manifest["members"]}
    assert set(biases) <= set(members), (sorted(biases), sorted(members))
    for name, channels in biases.items():
        path = folder / members[name]["file"]
        with safe_open(str(path), framework="pt") as weights:
            metadata = weights.metadata()
            state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118 - no __iter__
        for channel, value in channels.items():
            state["heads.0.bias"][channel] += value
        save_file(state, str(path), metadata=metadata)
        members[name]["sha256"] = file_sha256(path)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return folder


def labels_of(package: Path, dataset: Path, case: str = "case_00161") -> np.ndarray:
    """The engine's labels for ``case`` of ``dataset`` with ``package``, as an array."""
    predictor = Predictor(ModelPackage.load(package), PredictionOptions(quality="default", device="cpu"))
    image = sitk.ReadImage(str(dataset / case / "imaging.nii.gz"))
    return sitk.GetArrayFromImage(predictor.segment(image).labels)


def assert_stage_two_sets_the_masses(package: Path, dataset: Path, folder: Path, no_mass: frozenset = frozenset({1})
                                     ) -> None:
    """The exported cascade's stage 2 is what labels the masses: with stage 1 (and the localizer) made to find
    kidney everywhere, a refiner made to say tumor or cyst gives tumor or cyst, and one made to say no mass
    gives ``no_mass`` (kidney; TuNet's Algorithm 1 makes an empty tumor the whole region, so tumor there)."""
    loaded = ModelPackage.load(package)
    stage_one = [*loaded.segmenters, *([loaded.localizer] if loaded.localizer is not None else [])]
    kidney_everywhere = {member.name: {1: 30.0} for member in stage_one}
    refiner = loaded.refiners[0].name
    for channel, expected in ((0, set(no_mass)), (1, {2}), (2, {3})):
        biased = biased_copy(package, folder / f"refiner_channel{channel}",
                             {**kidney_everywhere, refiner: {channel: 30.0}})
        found = set(np.unique(labels_of(biased, dataset)).tolist()) - {0}
        assert found == expected, (f"refiner channel {channel}", found)
