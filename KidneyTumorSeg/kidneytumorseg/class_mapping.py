"""Networks with fewer output classes than the KiTS label table, and how their outputs map onto it.

A member's ``inference.output_labels`` in model.json lists, for each output channel of its network, the KiTS
label (0 background, 1 kidney, 2 tumor, 3 cyst) that channel stands for; several channels may share a label.
Without it a network must have 4 outputs, channel ``i`` being label ``i``. Examples:

- ``[0, 1]``: a kidney-region network (kidney, tumor and cyst trained as one class; KiTS19 two-stage, TuNet's
  W-Net): its foreground counts as kidney until a refiner says otherwise.
- ``[0, 2, 3]``: a refiner that tells tumor and cyst from "no mass" inside the kidney region.

Training describes the same thing from the other side: ``label_map[l]`` is the class a KiTS label ``l`` is
trained as (``[0, 1, 1, 1]`` for the kidney-region network, ``[0, 0, 1, 2]`` for the refiner above). Each class
stands for the smallest label mapped to it, so :func:`output_labels_from_label_map` turns one into the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_KITS_LABELS = 4


def _error(message: str) -> ValueError:
    return ValueError(f"Output labels: {message}")


def validate_output_labels(output_labels: Sequence[int], num_classes: int | None = None) -> tuple[int, ...]:
    """``output_labels`` as a tuple, checked: one KiTS label (0..3) per output channel, channel 0 background."""
    values = tuple(output_labels)
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise _error(f"expected a list of KiTS labels (0..3), one per output channel, got {list(values)!r}.")
    values = tuple(int(v) for v in values)
    if any(v < 0 or v >= NUM_KITS_LABELS for v in values):
        raise _error(f"every entry must be a KiTS label 0..3, got {list(values)}.")
    if values[0] != 0:
        raise _error(f"channel 0 must be background (0), got {list(values)}.")
    if num_classes is not None and len(values) != num_classes:
        raise _error(f"{len(values)} entries {list(values)} for a network with {num_classes} output classes; "
                     f"give one KiTS label per output channel.")
    return values


def to_kits_probabilities(probabilities: np.ndarray, output_labels: Sequence[int] | None) -> np.ndarray:
    """``(K, *spatial)`` probabilities of a network -> ``(4, *spatial)`` probabilities of the KiTS labels
    (channels sharing a label are added). ``None``: the channels already are the KiTS labels (returned as is)."""
    if output_labels is None:
        return probabilities
    labels = validate_output_labels(output_labels, probabilities.shape[0])
    if labels == tuple(range(NUM_KITS_LABELS)):
        return probabilities
    out = np.zeros((NUM_KITS_LABELS, *probabilities.shape[1:]), dtype=np.float32)
    for channel, label in enumerate(labels):
        out[label] += probabilities[channel]
    return out


def validate_label_map(label_map: Sequence[int]) -> tuple[int, ...]:
    """A training ``label_map`` checked: 4 entries (the class of KiTS labels 0..3), background 0, and every
    class from 0 to its maximum used."""
    values = tuple(label_map)
    if len(values) != NUM_KITS_LABELS or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                 and v >= 0 for v in values):
        raise ValueError(f"label_map must give the class of each KiTS label 0..3 (4 integers >= 0), "
                         f"got {list(values)!r}; e.g. [0, 1, 1, 1] trains kidney, tumor and cyst as one class.")
    values = tuple(int(v) for v in values)
    if values[0] != 0:
        raise ValueError(f"label_map must keep background as class 0, got {list(values)}.")
    if sorted(set(values)) != list(range(max(values) + 1)):
        raise ValueError(f"label_map must use every class from 0 to {max(values)}, got {list(values)}.")
    return values


def output_labels_from_label_map(label_map: Sequence[int]) -> tuple[int, ...]:
    """The ``output_labels`` of a network trained with ``label_map``: each class stands for its smallest label."""
    values = validate_label_map(label_map)
    return tuple(min(label for label, c in enumerate(values) if c == cls) for cls in range(max(values) + 1))


def apply_label_map(labels: np.ndarray, label_map: Sequence[int] | None) -> np.ndarray:
    """KiTS labels -> training classes (``None``: unchanged)."""
    if label_map is None:
        return labels
    table = np.asarray(validate_label_map(label_map), dtype=np.int64)
    return table[np.asarray(labels, dtype=np.int64)].astype(labels.dtype, copy=False)
