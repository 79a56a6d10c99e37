"""Inside the kidney: cortex, medulla, renal sinus and collecting system; tumors and cysts.

Their ranges overlap on purpose, as in real CT: medulla (40..100 HU in the corticomedullary phase),
hypo-enhancing tumor (from 40 HU), hyperdense cysts (50..90 HU) and necrotic tumor cores (5..30 HU,
like simple cysts at 0..25 HU), so that intensity alone cannot separate kidney, tumor and cyst.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg_training.synthetic.frame import AnatomicalFrame
from kidneytumorseg_training.synthetic.noise import smooth_noise
from kidneytumorseg_training.synthetic.tissues import HURanges, Phase, Tissue, hu_range


def paint_kidneys(
    hu: np.ndarray, mask: np.ndarray, frame: AnatomicalFrame, phase: Phase, rng: np.random.Generator,
    overrides: HURanges | None = None,
) -> None:
    """Overwrite ``hu`` inside kidney, tumor and cyst voxels of ``mask`` (LPS grid) with their texture.

    ``overrides``: mean-HU ranges replacing the phase's for kidney, tumor or cyst (a shifted domain); the random
    draws are the same, so everything else about the case is unchanged."""
    foreground = mask > 0
    if not foreground.any():
        return
    margin = 2
    box = ndimage.find_objects(foreground.astype(np.uint8))[0]
    box = tuple(slice(max(0, b.start - margin), min(n, b.stop + margin)) for b, n in zip(box, mask.shape, strict=True))
    local_mask = mask[box]
    local_hu = hu[box]
    spacing = frame.spacing
    depth = ndimage.distance_transform_edt(local_mask > 0, sampling=spacing).astype(np.float32)
    _paint_parenchyma(local_hu, local_mask, depth, frame, box, phase, rng, overrides)
    for component, _ in _components(local_mask == TUMOR):
        _paint_tumor(local_hu, component, spacing, phase, rng, overrides)
    for component, _ in _components(local_mask == CYST):
        _paint_cyst(local_hu, component, spacing, phase, rng, overrides)


def _components(binary: np.ndarray):
    labelled, count = ndimage.label(binary)
    for index, box in enumerate(ndimage.find_objects(labelled), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, binary.shape, strict=True))
        yield (grown, labelled[grown] == index), index


def _draw(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _paint_parenchyma(
    hu: np.ndarray, mask: np.ndarray, depth: np.ndarray, frame: AnatomicalFrame, box: tuple,
    phase: Phase, rng: np.random.Generator, overrides: HURanges | None = None,
) -> None:
    kidney = mask == KIDNEY
    if not kidney.any():
        return
    cortex_hu = _draw(rng, *hu_range(Tissue.KIDNEY, phase, overrides))
    cortex_mm = _draw(rng, 4.0, 8.0)
    shape, spacing = mask.shape, frame.spacing
    lobes = smooth_noise(shape, spacing, 9.0, rng)
    fine = smooth_noise(shape, spacing, 3.0, rng)
    if phase == Phase.CORTICOMEDULLARY:
        medulla_hu = _draw(rng, 40, 100)
    elif phase == Phase.NEPHROGRAPHIC:
        medulla_hu = cortex_hu + _draw(rng, -12, 8)  # homogeneous nephrogram
    elif phase == Phase.EXCRETORY:
        medulla_hu = cortex_hu + _draw(rng, -10, 25)
    else:
        medulla_hu = cortex_hu + _draw(rng, -6, 4)
    # Medullary pyramids below the cortex, interrupted by columns of Bertin where the lobe field is low.
    medulla = kidney & (depth > cortex_mm) & (lobes > -0.35)
    values = np.where(medulla, np.float32(medulla_hu), np.float32(cortex_hu)) + np.float32(6.0) * fine
    # Renal sinus: the deepest part of each kidney on its hilum (medial-anterior) side, fat with the
    # collecting system inside. Defined by depth quantiles so it exists at any resolution.
    u, v, _ = frame.coords(box)
    u_full = np.broadcast_to(u, shape)
    for kidney_info in frame.kidneys:
        side = 1.0 if kidney_info.centroid[0] > 0 else -1.0
        own = kidney & (np.sign(u_full) == side)
        if own.sum() < 20:
            continue
        toward_hilum = side * (kidney_info.centroid[0] - u) + 0.5 * (kidney_info.centroid[1] - v)
        candidates = own & (np.broadcast_to(toward_hilum, shape) > 0)
        if not candidates.any():
            continue
        sinus = candidates & (depth > np.quantile(depth[own], _draw(rng, 0.75, 0.88)))
        collecting = sinus & (fine > -0.3)
        if phase == Phase.EXCRETORY:
            system_hu = _draw(rng, 300, 1200)  # contrast excreted into the collecting system
        else:
            system_hu = _draw(rng, 0, 15)  # urine
        values = np.where(sinus, np.float32(_draw(rng, -70, -20)) + 15 * lobes, values)
        values = np.where(collecting, np.float32(system_hu), values)
    hu[kidney] = values[kidney]


def _paint_tumor(hu: np.ndarray, component, spacing, phase: Phase, rng: np.random.Generator,
                 overrides: HURanges | None = None) -> None:
    box, inside = component
    shape = inside.shape
    base = _draw(rng, *hu_range(Tissue.TUMOR, phase, overrides))
    texture = smooth_noise(shape, spacing, _draw(rng, 3, 8), rng)
    values = base + _draw(rng, 10, 35) * texture
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)
    max_depth = float(depth.max())
    if rng.random() < 0.55 and max_depth > 4:
        # Necrotic, non-enhancing core with irregular margins.
        necrosis_field = smooth_noise(shape, spacing, 6, rng)
        necrotic = inside & (depth > max_depth * _draw(rng, 0.3, 0.6)) & (necrosis_field > -0.3)
        values = np.where(necrotic, _draw(rng, 5, 30) + 5 * texture, values)
    if rng.random() < 0.4 and phase != Phase.UNENHANCED:
        septa_field = smooth_noise(shape, spacing, 5, rng)
        septa = inside & (np.abs(septa_field) < 0.08)
        values = np.where(septa, values + _draw(rng, 30, 70), values)
    if rng.random() < 0.5 and phase != Phase.UNENHANCED:
        rim = inside & (depth <= 2.0)
        values = np.where(rim, values + _draw(rng, 10, 40), values)
    target = hu[box]
    target[inside] = values[inside].astype(np.float32)


def _paint_cyst(hu: np.ndarray, component, spacing, phase: Phase, rng: np.random.Generator,
                overrides: HURanges | None = None) -> None:
    box, inside = component
    if rng.random() < 0.15:
        content = _draw(rng, 50, 90)  # hyperdense (haemorrhagic / proteinaceous) cyst
    else:
        content = _draw(rng, *hu_range(Tissue.CYST, phase, overrides))
    values = np.full(inside.shape, content, dtype=np.float32)
    if phase != Phase.UNENHANCED:
        # A thin, sharply bounded wall one voxel thick.
        wall = inside & ~ndimage.binary_erosion(inside)
        values[wall] += _draw(rng, 5, 25)
    target = hu[box]
    target[inside] = values[inside]
