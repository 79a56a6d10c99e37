"""Tissue classes of the synthetic body and their Hounsfield units per contrast phase.

Ranges are the literature's typical attenuation values; each case draws one mean per tissue from its
range, so that the same tissue differs between patients and scanners the way it does in real CT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum, IntEnum


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    MUSCLE = 3
    VISCERAL_FAT = 4
    PERIRENAL_FAT = 5
    LIVER = 6
    SPLEEN = 7
    GALLBLADDER = 8
    PANCREAS = 9
    STOMACH_WALL = 10
    BOWEL_WALL = 11
    BOWEL_FLUID = 12
    GAS = 13
    STOOL = 14
    AORTA = 15
    IVC = 16
    RENAL_ARTERY = 17
    RENAL_VEIN = 18
    BONE_CANCELLOUS = 19
    BONE_CORTICAL = 20
    DISC = 21
    CSF = 22
    LUNG = 23
    TABLE_SHELL = 24
    TABLE_CORE = 25
    METAL = 26
    KIDNEY = 27
    TUMOR = 28
    CYST = 29
    LIVER_VESSEL = 30  # portal and hepatic veins inside the liver
    MESENTERIC_VESSEL = 31  # superior mesenteric artery and vein


class Phase(str, Enum):
    """Contrast phase of the scan. KiTS scans are corticomedullary or nephrographic."""

    UNENHANCED = "unenhanced"
    CORTICOMEDULLARY = "corticomedullary"
    NEPHROGRAPHIC = "nephrographic"
    EXCRETORY = "excretory"


PHASE_PROBABILITIES: dict[Phase, float] = {
    Phase.CORTICOMEDULLARY: 0.45,
    Phase.NEPHROGRAPHIC: 0.30,
    Phase.UNENHANCED: 0.12,
    Phase.EXCRETORY: 0.13,
}

# (unenhanced, corticomedullary, nephrographic, excretory) mean-HU ranges; a single range applies to all.
_HU: dict[Tissue, tuple] = {
    Tissue.AIR: ((-1010, -990),),
    Tissue.SKIN: ((20, 60),),
    Tissue.SUBCUTANEOUS_FAT: ((-120, -80),),
    Tissue.MUSCLE: ((35, 60),),
    Tissue.VISCERAL_FAT: ((-115, -85),),
    Tissue.PERIRENAL_FAT: ((-110, -80),),
    Tissue.LIVER: ((50, 65), (60, 90), (90, 130), (80, 110)),
    Tissue.SPLEEN: ((40, 55), (90, 150), (100, 130), (90, 115)),
    Tissue.GALLBLADDER: ((0, 20),),
    Tissue.PANCREAS: ((35, 50), (100, 150), (80, 120), (70, 100)),
    Tissue.STOMACH_WALL: ((30, 45), (70, 120), (70, 110), (60, 90)),
    Tissue.BOWEL_WALL: ((30, 45), (60, 120), (60, 110), (55, 90)),
    Tissue.BOWEL_FLUID: ((0, 25),),
    Tissue.GAS: ((-1000, -900),),
    Tissue.STOOL: ((-250, -50),),
    Tissue.AORTA: ((35, 50), (200, 350), (140, 200), (110, 150)),
    Tissue.IVC: ((35, 50), (80, 130), (130, 180), (100, 140)),
    Tissue.RENAL_ARTERY: ((35, 50), (200, 330), (140, 190), (110, 150)),
    Tissue.RENAL_VEIN: ((35, 50), (140, 200), (140, 190), (110, 150)),
    Tissue.BONE_CANCELLOUS: ((150, 400),),
    Tissue.BONE_CORTICAL: ((700, 1200),),
    Tissue.DISC: ((70, 110),),
    Tissue.CSF: ((0, 15),),
    Tissue.LUNG: ((-900, -800),),
    Tissue.TABLE_SHELL: ((100, 300),),
    Tissue.TABLE_CORE: ((-700, -500),),
    Tissue.METAL: ((2500, 3000),),
    # Kidney parenchyma: cortex here, medulla / sinus / collecting system in kidney_texture.py.
    Tissue.KIDNEY: ((20, 40), (150, 250), (120, 200), (100, 160)),
    Tissue.TUMOR: ((20, 45), (60, 180), (50, 140), (40, 110)),
    Tissue.CYST: ((0, 25),),
    Tissue.LIVER_VESSEL: ((35, 45), (100, 160), (150, 200), (120, 160)),
    Tissue.MESENTERIC_VESSEL: ((35, 50), (150, 280), (140, 190), (110, 150)),
}

# Texture amplitude (HU, standard deviation of the smooth texture field) per tissue.
TEXTURE_HU: dict[Tissue, float] = {
    Tissue.SUBCUTANEOUS_FAT: 8, Tissue.VISCERAL_FAT: 15, Tissue.PERIRENAL_FAT: 10, Tissue.MUSCLE: 6,
    Tissue.LIVER: 8, Tissue.SPLEEN: 10, Tissue.PANCREAS: 12, Tissue.BOWEL_WALL: 10, Tissue.STOOL: 120,
    Tissue.BONE_CANCELLOUS: 45, Tissue.LUNG: 40, Tissue.BOWEL_FLUID: 4, Tissue.KIDNEY: 6,
}

_PHASE_INDEX = {Phase.UNENHANCED: 0, Phase.CORTICOMEDULLARY: 1, Phase.NEPHROGRAPHIC: 2, Phase.EXCRETORY: 3}


HURanges = Mapping[Tissue, tuple[float, float]]


def hu_range(tissue: Tissue, phase: Phase, overrides: HURanges | None = None) -> tuple[float, float]:
    """The range the mean HU of ``tissue`` is drawn from in ``phase`` (``overrides[tissue]`` where given)."""
    if overrides and tissue in overrides:
        return overrides[tissue]
    ranges = _HU[tissue]
    return ranges[0] if len(ranges) == 1 else ranges[_PHASE_INDEX[phase]]


def parse_hu_overrides(overrides: Mapping[str, Sequence[float]] | None) -> dict[Tissue, tuple[float, float]]:
    """``{"tumor": (260, 340)}`` -> ``{Tissue.TUMOR: (260.0, 340.0)}``; ValueError naming the fix when a tissue
    is unknown or a range is not ``(low, high)`` with ``low <= high``."""
    parsed: dict[Tissue, tuple[float, float]] = {}
    for name, values in (overrides or {}).items():
        try:
            tissue = Tissue[str(name).upper()]
        except KeyError:
            raise ValueError(f"Unknown tissue {name!r} in the HU overrides; known: "
                             f"{[t.name.lower() for t in Tissue]}.") from None
        bounds = tuple(float(v) for v in values)
        if len(bounds) != 2 or not bounds[0] <= bounds[1]:
            raise ValueError(f"The HU override of {name!r} must be a range (low, high) with low <= high, "
                             f"got {list(values)}.")
        parsed[tissue] = (bounds[0], bounds[1])
    return parsed
