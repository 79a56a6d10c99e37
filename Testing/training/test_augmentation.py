"""On-the-fly patch augmentation: determinism, label integrity, image/label alignment, config round trip."""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
import pytest
import torch

from kidneytumorseg_training.augmentation import AugmentationConfig, augment

logger = logging.getLogger(__name__)

NOTHING = {name: 0.0 for name in ("p_rotation", "p_scale", "p_noise", "p_blur", "p_brightness", "p_contrast",
                                  "p_lowres", "p_gamma_inverted", "p_gamma", "p_mirror")}
SPATIAL = {**NOTHING, "p_rotation": 1.0, "p_scale": 1.0}
INTENSITY = {**NOTHING, "p_noise": 1.0, "p_blur": 1.0, "p_blur_per_channel": 1.0, "p_brightness": 1.0,
             "p_contrast": 1.0, "p_lowres": 1.0, "p_lowres_per_channel": 1.0, "p_gamma_inverted": 1.0,
             "p_gamma": 1.0}
EVERYTHING = {**INTENSITY, "p_rotation": 1.0, "p_scale": 1.0, "p_mirror": 1.0}


def _patch(shape: tuple[int, int, int] = (24, 48, 48), channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A kidney-like blob holding a tumor and a cyst, the image brighter per class plus noise."""
    s, p, l_ = np.ogrid[:shape[0], :shape[1], :shape[2]]
    label = np.zeros(shape, np.uint8)
    label[((s - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((p - shape[1] / 2) / (shape[1] / 3)) ** 2
          + ((l_ - shape[2] / 2) / (shape[2] / 4)) ** 2 < 1] = 1
    label[((s - shape[0] / 2) ** 2 + (p - shape[1] / 2) ** 2 + (l_ - shape[2] / 2) ** 2) < (shape[1] / 8) ** 2] = 2
    label[((s - shape[0] / 2) ** 2 + (p - shape[1] / 3) ** 2 + (l_ - shape[2] / 2) ** 2) < (shape[1] / 12) ** 2] = 3
    rng = np.random.default_rng(0)
    image = np.stack([label * (c + 1.0) + rng.normal(0, 0.3, shape) for c in range(channels)]).astype(np.float32)
    return image, label


def test_same_seed_same_output_different_seed_different() -> None:
    image, label = _patch(channels=2)
    config = AugmentationConfig(**EVERYTHING)
    a_img, a_lab = augment(image, label, config, seed=7)
    b_img, b_lab = augment(image, label, config, seed=7)
    c_img, c_lab = augment(image, label, config, seed=8)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)
    # the defaults too: some of a few seeds must differ from each other
    outputs = {augment(image, label, AugmentationConfig(), seed=s)[0].tobytes() for s in range(4)}
    assert len(outputs) > 1


def test_shapes_dtypes_preserved_and_inputs_untouched() -> None:
    image, label = _patch(channels=2)
    image_copy, label_copy = image.copy(), label.copy()
    out_img, out_lab = augment(image, label, AugmentationConfig(**EVERYTHING), seed=1)
    assert out_img.shape == image.shape and out_img.dtype == np.float32
    assert out_lab.shape == label.shape and out_lab.dtype == np.uint8
    assert np.array_equal(image, image_copy) and np.array_equal(label, label_copy)
    assert np.isfinite(out_img).all()


@pytest.mark.parametrize("values", [(0, 1, 2, 3), (0, 2)])
def test_label_values_stay_a_subset_of_the_input_values(values: tuple[int, ...]) -> None:
    image, label = _patch()
    if values == (0, 2):
        label = np.where(label > 0, 2, 0).astype(np.uint8)
    for seed in range(3):
        _, out_lab = augment(image, label, AugmentationConfig(**EVERYTHING), seed=seed)
        assert set(np.unique(out_lab)) <= set(values)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mirroring_flips_image_and_label_together(axis: int) -> None:
    image, label = _patch()
    marker = (3, 5, 7)
    image[(0, *marker)] = 100.0
    label[marker] = 3
    config = AugmentationConfig(**{**NOTHING, "p_mirror": 1.0}, mirror_axes=(axis,))
    out_img, out_lab = augment(image, label, config, seed=0)
    moved = list(marker)
    moved[axis] = label.shape[axis] - 1 - marker[axis]
    assert out_img[(0, *moved)] == 100.0 and out_lab[tuple(moved)] == 3
    assert np.array_equal(out_img[0], np.flip(image[0], axis)) and np.array_equal(out_lab, np.flip(label, axis))


def test_intensity_transforms_leave_the_label_in_place() -> None:
    image, label = _patch()
    out_img, out_lab = augment(image, label, AugmentationConfig(**INTENSITY), seed=3)
    assert np.array_equal(out_lab, label)
    assert not np.allclose(out_img, image)


def test_spatial_transforms_move_image_and_label_identically() -> None:
    _, label = _patch()
    image = label[None].astype(np.float32)  # the image *is* the label: both must land in the same place
    out_img, out_lab = augment(image, label, AugmentationConfig(**SPATIAL), seed=5)
    assert not np.array_equal(out_lab, label)
    assert (np.rint(out_img[0]) == out_lab).mean() > 0.97


def test_anisotropic_rotation_and_scaling_stay_in_plane() -> None:
    shape = (12, 48, 48)
    _, p, l_ = np.ogrid[:shape[0], :shape[1], :shape[2]]
    disc = (p - 16) ** 2 + (l_ - 20) ** 2 < 100  # off-centre, so any in-plane rotation or scaling moves it
    label = (disc * (np.arange(shape[0]) % 3 + 1)[:, None, None]).astype(np.uint8)
    image = label[None].astype(np.float32)
    config = AugmentationConfig(**SPATIAL, anisotropic=True)
    for seed in range(3):
        _, out_lab = augment(image, label, config, seed=seed)
        assert not np.array_equal(out_lab, label)
        for s in range(shape[0]):  # each slice keeps its own value: nothing moved across slices
            assert set(np.unique(out_lab[s])) == {0, s % 3 + 1}


def test_disabled_config_returns_equal_copies() -> None:
    image, label = _patch()
    out_img, out_lab = augment(image, label, AugmentationConfig.none(), seed=0)
    assert np.array_equal(out_img, image) and np.array_equal(out_lab, label)
    assert out_img is not image and out_lab is not label


def test_config_round_trips_through_json_and_rejects_bad_values() -> None:
    config = AugmentationConfig(anisotropic=True, p_elastic=0.2, mirror_axes=(1, 2))
    again = AugmentationConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert AugmentationConfig().p_elastic == 0.0 and AugmentationConfig().scale_range == (0.7, 1.4)
    with pytest.raises(ValueError, match="p_gamma"):
        AugmentationConfig(p_gamma=1.5)
    with pytest.raises(ValueError, match="scale_range"):
        AugmentationConfig(scale_range=(1.4, 0.7))
    with pytest.raises(ValueError, match="mirror_axes"):
        AugmentationConfig(mirror_axes=(3,))
    with pytest.raises(ValueError, match="unknown augmentation setting"):
        AugmentationConfig.from_dict({"p_rotate": 0.2})


def test_rejects_mismatched_shapes() -> None:
    image, label = _patch()
    with pytest.raises(ValueError, match="same grid"):
        augment(image, label[:-1], AugmentationConfig(), seed=0)


def test_elastic_deformation_is_deterministic_and_keeps_labels() -> None:
    image, label = _patch(shape=(12, 24, 24))
    config = AugmentationConfig(**{**NOTHING, "p_elastic": 1.0}, elastic_sigma=(3.0, 3.0),
                                elastic_magnitude=(100.0, 100.0))
    a_img, a_lab = augment(image, label, config, seed=2)
    b_img, b_lab = augment(image, label, config, seed=2)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, label) and set(np.unique(a_lab)) <= {0, 1, 2, 3}


def test_time_per_nnunet_sized_patch(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, not asserted: a 1x48x112x112 patch on one thread (defaults, and every transform firing)."""
    image, label = _patch(shape=(48, 112, 112))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        augment(image, label, AugmentationConfig(), seed=0)  # warm-up
        times = {}
        for name, config, runs in (("default", AugmentationConfig(), 6),
                                   ("everything", AugmentationConfig(**EVERYTHING), 3)):
            start = time.perf_counter()
            for seed in range(runs):
                augment(image, label, config, seed=seed)
            times[name] = (time.perf_counter() - start) / runs
    finally:
        torch.set_num_threads(threads)
    message = (f"augment 1x48x112x112, one thread: {times['default']:.3f} s/patch with the defaults, "
               f"{times['everything']:.3f} s/patch with every transform firing\n")
    logger.info(message.strip())
    with capsys.disabled():  # shown even under -q
        sys.stderr.write("\n" + message)
