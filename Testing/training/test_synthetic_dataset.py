"""Building a synthetic KiTS-format dataset: layout, resume, parallel = serial, bad input, no half-written case."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from kidneytumorseg.errors import MissingInputError
from kidneytumorseg_training.synthetic import dataset as dataset_module
from kidneytumorseg_training.synthetic.dataset import build_dataset

CASES = ["case_00021", "case_00252"]


@pytest.fixture
def source(tmp_path, masks_3mm_dir):
    folder = tmp_path / "masks"
    for case in CASES:
        shutil.copytree(masks_3mm_dir / case, folder / case)
    return folder


def _arrays(case_dir):
    return (sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / "imaging.nii.gz"))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / "segmentation.nii.gz"))))


def test_builds_kits_layout_with_previews_and_records(source, tmp_path):
    out = tmp_path / "out"
    report = build_dataset(source, out, jobs=1, base_seed=3)
    assert report.built == CASES and not report.failed
    for case in CASES:
        image = sitk.ReadImage(str(out / case / "imaging.nii.gz"))
        mask = sitk.ReadImage(str(out / case / "segmentation.nii.gz"))
        original = sitk.ReadImage(str(source / case / "segmentation.nii.gz"))
        assert image.GetSize() == mask.GetSize() == original.GetSize()
        assert image.GetOrigin() == original.GetOrigin() and image.GetDirection() == original.GetDirection()
        assert np.array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(original))
        record = json.loads((out / case / "synthetic.json").read_text())
        assert record["phase"] in {"unenhanced", "corticomedullary", "nephrographic", "excretory"}
        with Image.open(out / case / "preview.png") as png:
            assert png.width > 300 and png.height > 200
    assert "CC BY-NC-SA 4.0" in (out / "NOTICE.md").read_text()


def test_a_second_run_keeps_finished_cases(source, tmp_path):
    out = tmp_path / "out"
    build_dataset(source, out, jobs=1, preview=False)
    stamp = (out / CASES[0] / "imaging.nii.gz").stat().st_mtime_ns
    report = build_dataset(source, out, jobs=1, preview=False)
    assert report.kept == CASES and report.built == []
    assert (out / CASES[0] / "imaging.nii.gz").stat().st_mtime_ns == stamp


def test_an_unfinished_case_is_rebuilt(source, tmp_path):
    out = tmp_path / "out"
    build_dataset(source, out, jobs=1, preview=False)
    (out / CASES[1] / "synthetic.json").unlink()  # as if the run had been killed before the end of the case
    report = build_dataset(source, out, jobs=1, preview=False)
    assert report.built == [CASES[1]] and report.kept == [CASES[0]]


def test_parallel_build_equals_serial_build_bit_for_bit(source, tmp_path):
    build_dataset(source, tmp_path / "serial", jobs=1, preview=False, base_seed=9)
    build_dataset(source, tmp_path / "parallel", jobs=2, preview=False, base_seed=9)
    for case in CASES:
        serial, parallel = _arrays(tmp_path / "serial" / case), _arrays(tmp_path / "parallel" / case)
        assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_resampling_to_a_coarser_anatomical_spacing(source, tmp_path):
    build_dataset(source, tmp_path / "out", spacing=(4.0, 4.0, 6.0), jobs=1, preview=False, cases=[CASES[0]])
    mask = sitk.ReadImage(str(tmp_path / "out" / CASES[0] / "segmentation.nii.gz"))
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    for axis, spacing in enumerate(mask.GetSpacing()):
        anatomical = int(np.argmax(np.abs(direction[:, axis])))  # 0 LR, 1 AP, 2 SI
        assert spacing == pytest.approx((4.0, 4.0, 6.0)[anatomical])


def test_a_bad_mask_is_reported_by_name_and_leaves_nothing(source, tmp_path):
    bad = source / "case_00999" / "segmentation.nii.gz"
    bad.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.full((6, 6, 6), 7, dtype=np.uint8)), str(bad))
    out = tmp_path / "out"
    report = build_dataset(source, out, jobs=1, preview=False)
    assert report.built == CASES
    assert "case_00999" in report.failed and "outside 0..3" in report.failed["case_00999"]
    assert str(bad) in report.failed["case_00999"]
    assert not (out / "case_00999").exists()


def test_a_failure_while_writing_leaves_no_half_written_case(source, tmp_path, monkeypatch):
    real_write = dataset_module.write_image_atomic

    def write_then_fail(image, path, **kwargs):
        if path.name == "segmentation.nii.gz":
            raise OSError(28, "No space left on device")
        return real_write(image, path, **kwargs)

    monkeypatch.setattr(dataset_module, "write_image_atomic", write_then_fail)
    report = build_dataset(source, tmp_path / "out", jobs=1, preview=False, cases=[CASES[0]])
    assert "No space left" in report.failed[CASES[0]]
    assert not (tmp_path / "out" / CASES[0]).exists()


def test_missing_inputs_are_named(tmp_path, source):
    with pytest.raises(MissingInputError, match="no such folder"):
        build_dataset(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no case_XXXXX folders"):
        build_dataset(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(MissingInputError, match="case_12345"):
        build_dataset(source, tmp_path / "out", cases=["case_12345"])
    (source / "case_00777").mkdir()
    with pytest.raises(MissingInputError, match="case_00777/segmentation.nii.gz"):
        build_dataset(source, tmp_path / "out")
