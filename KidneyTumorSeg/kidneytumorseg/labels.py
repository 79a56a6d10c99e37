"""The KiTS label table and the challenge's hierarchical evaluation regions."""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0
KIDNEY = 1
TUMOR = 2
CYST = 3

LABEL_NAMES: dict[int, str] = {KIDNEY: "kidney", TUMOR: "tumor", CYST: "cyst"}
VALID_LABELS: frozenset[int] = frozenset({BACKGROUND, KIDNEY, TUMOR, CYST})

# Display colors (RGB 0..1), the ones the Slicer module gives the segments.
LABEL_COLORS: dict[int, tuple[float, float, float]] = {
    KIDNEY: (0.847, 0.396, 0.310),
    TUMOR: (0.565, 0.933, 0.565),
    CYST: (0.949, 0.871, 0.294),
}


@dataclass(frozen=True)
class Region:
    """A KiTS hierarchical evaluation region: a union of labels with its surface-Dice tolerance."""

    name: str
    labels: tuple[int, ...]
    tolerance_mm: float


# The KiTS21/KiTS23 regions, in the challenge's order, with the tolerances the challenge computed
# from inter-rater variability (kits21/evaluation/compute_tolerances.py).
KITS_REGIONS: tuple[Region, ...] = (
    Region("kidney_and_mass", (KIDNEY, TUMOR, CYST), 1.0330772532390826),
    Region("mass", (TUMOR, CYST), 1.1328796488598762),
    Region("tumor", (TUMOR,), 1.1498198361434828),
)

# Standard terminology of each segment in 3D Slicer's "TerminologyEntry" tag format:
# context ~ category ~ type ~ type modifier ~ anatomic context ~ anatomic region ~ region modifier,
# each code as scheme^value^meaning (SNOMED CT codes, DICOM CID 7150 / 7159).
_ANATOMY = "Anatomic codes - DICOM master list"
LABEL_TERMINOLOGY: dict[int, str] = {
    KIDNEY: "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    f"~SCT^64033007^Kidney~^^~{_ANATOMY}~^^~^^",
    TUMOR: "Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
    f"~SCT^108369006^Neoplasm~^^~{_ANATOMY}~SCT^64033007^Kidney~^^",
    CYST: "Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
    f"~SCT^367643001^Cyst~^^~{_ANATOMY}~SCT^64033007^Kidney~^^",
}
