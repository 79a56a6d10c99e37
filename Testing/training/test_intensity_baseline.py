"""Realism: intensity alone must not find the tumor in the synthetic CT.

A per-voxel classifier that keeps the best HU interval for tumor, fitted on synthetic training cases,
scores tumor Dice below 0.5 on held-out synthetic cases (different patients' masks). The same classifier
finds an unrealistically bright tumor almost perfectly, so the test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.labels import TUMOR
from kidneytumorseg_training.synthetic.generator import generate_ct
from kidneytumorseg_training.synthetic.intensity_baseline import dice, fit_interval


@pytest.fixture(scope="module")
def cases(mask_cases, load_mask):
    """(ct, tumor mask, kidney-and-mass mask) for every committed mask, two seeds each."""
    made = {}
    for index, case in enumerate(mask_cases):
        mask = load_mask(case)
        labels = sitk.GetArrayFromImage(mask)
        made[case] = [
            (sitk.GetArrayFromImage(generate_ct(mask, seed=100 * index + s).image), labels == TUMOR, labels > 0)
            for s in (1, 2)
        ]
    return made


def _split(cases):
    names = sorted(cases)
    half = len(names) // 2
    train = [pair for name in names[:half] for pair in cases[name]]
    held_out = [pair for name in names[half:] for pair in cases[name]]
    return train, held_out


def test_best_hu_interval_cannot_find_the_tumor(cases):
    train, held_out = _split(cases)
    interval = fit_interval((ct, tumor) for ct, tumor, _ in train)
    scores = [dice(interval.predict(ct), tumor) for ct, tumor, _ in held_out if tumor.any()]
    assert len(scores) >= 4
    assert np.mean(scores) < 0.5, f"tumor Dice {np.mean(scores):.3f} with HU in [{interval.low}, {interval.high})"


def test_even_inside_the_kidney_intensity_does_not_separate_tumor(cases):
    """Told where the kidney is, the best HU interval still cannot delineate the tumor well."""
    train, held_out = _split(cases)
    interval = fit_interval((ct[region], tumor[region]) for ct, tumor, region in train)
    scores = [dice(interval.predict(ct[region]), tumor[region]) for ct, tumor, region in held_out if tumor.any()]
    assert np.mean(scores) < 0.7, f"tumor Dice inside the kidney {np.mean(scores):.3f}"


def test_the_classifier_finds_an_unrealistically_bright_tumor(cases):
    """Control: with tumor at a constant 600 HU the same fit scores near 1, so the realism test can fail."""
    def brightened(pairs):
        for ct, tumor, _ in pairs:
            fake = ct.copy()
            fake[tumor] = 600
            yield fake, tumor

    train, held_out = _split(cases)
    interval = fit_interval(brightened(train))
    scores = [dice(interval.predict(ct), tumor) for ct, tumor in brightened(held_out) if tumor.any()]
    assert np.mean(scores) > 0.9
