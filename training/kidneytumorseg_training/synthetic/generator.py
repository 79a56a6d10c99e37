"""Synthetic abdominal CT from a KiTS mask, on the mask's exact grid, reproducible from a seed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.geometry import image_from_lps, to_lps
from kidneytumorseg.image_io import check_3d, check_label_map
from kidneytumorseg.resources import require_memory
from kidneytumorseg_training.synthetic.anatomy import BodyPlan, build_tissue_map, plan_body
from kidneytumorseg_training.synthetic.frame import build_frame
from kidneytumorseg_training.synthetic.kidney_texture import paint_kidneys
from kidneytumorseg_training.synthetic.noise import smooth_noise
from kidneytumorseg_training.synthetic.scanner import ScannerSettings, acquire, draw_scanner
from kidneytumorseg_training.synthetic.tissues import (
    PHASE_PROBABILITIES,
    TEXTURE_HU,
    Phase,
    Tissue,
    hu_range,
    parse_hu_overrides,
)

logger = logging.getLogger(__name__)

# Peak memory of one generation per voxel of the mask grid (benchmarks/generator_memory.py: 22.4 bytes on
# a 70-million-voxel case), plus headroom.
BYTES_PER_VOXEL = 28


@dataclass(frozen=True)
class SyntheticCT:
    """A generated CT (on the mask's grid) and the random choices that made it."""

    image: sitk.Image
    seed: int
    phase: Phase
    body: BodyPlan
    scanner: ScannerSettings
    tissue_hu: dict[str, float] = field(default_factory=dict)

    def description(self) -> dict:
        """JSON-serialisable record of how the case was made."""
        return {
            "seed": self.seed,
            "phase": self.phase.value,
            "body": asdict(self.body),
            "scanner": asdict(self.scanner),
            "tissue_hu": self.tissue_hu,
        }


def generate_ct(mask: sitk.Image, seed: int, phase: Phase | None = None,
                scanner_overrides: Mapping[str, Any] | None = None,
                tissue_hu_overrides: Mapping[str, Sequence[float]] | None = None) -> SyntheticCT:
    """Generate a synthetic CT for a KiTS label map. Same mask and seed give the same image, bit for bit.

    ``phase`` forces a contrast phase; by default it is drawn (mostly corticomedullary / nephrographic).
    ``scanner_overrides`` replaces drawn acquisition settings (``ScannerSettings`` fields, e.g.
    ``{"noise_hu": 45}``), which makes shifted domains for fine-tuning experiments; the random streams are
    unchanged, so everything else about the case stays the same. ``tissue_hu_overrides`` does the same for
    tissue contrast: ``{"tumor": (260, 340)}`` draws the tumor's mean HU from that range instead of the phase's
    (a hyper-enhancing tumor); names are :class:`Tissue` members in lower case.
    """
    check_3d(mask, "mask")
    check_label_map(mask, "mask")
    hu_overrides = parse_hu_overrides(tissue_hu_overrides)
    voxels = mask.GetNumberOfPixels()
    require_memory(
        BYTES_PER_VOXEL * voxels, f"generating a CT on a {'x'.join(map(str, mask.GetSize()))} grid",
        "Resample the mask to a coarser spacing first (--spacing 1.5,1.5,3) or run fewer jobs at once.",
    )
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    phase_rng, body_rng, anatomy_rng, texture_rng, kidney_rng, scanner_rng = streams
    if phase is None:
        phases = list(PHASE_PROBABILITIES)
        phase = phases[int(phase_rng.choice(len(phases), p=list(PHASE_PROBABILITIES.values())))]

    labels, spacing, orientation = to_lps(sitk.Cast(mask, sitk.sitkUInt8))
    frame = build_frame(labels, spacing)
    body = plan_body(frame, body_rng)
    tissue = build_tissue_map(frame, labels, body, anatomy_rng)

    means = np.zeros(len(Tissue), dtype=np.float32)
    amplitudes = np.zeros(len(Tissue), dtype=np.float32)
    for t in Tissue:
        means[t] = texture_rng.uniform(*hu_range(t, phase, hu_overrides))
        amplitudes[t] = TEXTURE_HU.get(t, 3.0)
    if body.oral_contrast:
        means[Tissue.BOWEL_FLUID] = texture_rng.uniform(150, 400)
    hu = means[tissue]
    texture = smooth_noise(frame.shape, frame.spacing, 5.0, texture_rng)
    texture *= amplitudes[tissue]
    hu += texture
    del texture
    paint_kidneys(hu, labels, frame, phase, kidney_rng, hu_overrides)

    scanner = draw_scanner(scanner_rng)
    if scanner_overrides:
        unknown = sorted(set(scanner_overrides) - {f.name for f in fields(ScannerSettings)})
        if unknown:
            raise ValueError(f"Unknown scanner settings {unknown}; known: {[f.name for f in fields(ScannerSettings)]}.")
        scanner = replace(scanner, **scanner_overrides)
    metal_sites = _metal_sites(frame, body, scanner_rng) if scanner.metal else None
    ct = acquire(hu, frame, scanner, scanner_rng, metal_sites)
    del hu, tissue

    image = image_from_lps(ct, orientation)
    logger.debug("generated %s-phase CT, size %s, seed %d", phase.value, image.GetSize(), seed)
    return SyntheticCT(
        image=image, seed=seed, phase=phase, body=body, scanner=scanner,
        tissue_hu={t.name.lower(): round(float(means[t]), 1) for t in Tissue},
    )


def _metal_sites(frame, body: BodyPlan, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Where implants go: pedicle screws beside the spine, or surgical clips near a renal hilum."""
    w_values = frame.w.ravel()
    w = float(rng.uniform(w_values.min(), w_values.max()))
    if rng.random() < 0.5 or not frame.kidneys:
        return [(side * 14.0, body.spine_v + 22.0, w) for side in (-1.0, 1.0)]
    kidney = frame.kidneys[int(rng.integers(len(frame.kidneys)))]
    side = 1.0 if kidney.centroid[0] > 0 else -1.0
    hilum_u = kidney.centroid[0] - side * (kidney.upper[0] - kidney.lower[0]) * 0.5 - side * 12
    return [(hilum_u, kidney.centroid[1] - 10, kidney.centroid[2])]
