"""Weight averaging of a fine-tuned network with its parent (WiSE-FT, Wortsman et al., CVPR 2022).

A network fine-tuned on a few corrected cases of a new domain learns that domain and forgets part of the old
one. Interpolating its weights with the parent's, ``(1 - a) * parent + a * tuned``, keeps much of what was
learned and much of what was known: both networks start from the same weights, so the straight line between them
stays in a region of low loss. ``a = 1`` is the fine-tuned network, ``a = 0`` the parent.

    weights = average_weights(parent_weights, tuned_weights, 0.5)
    write_averaged_package(parent, tuned, 0.5, folder, version="1.3.2")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_package import ModelPackage, load_member_weights, write_package_version


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in [0, 1], or a clear error."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise KidneyTumorSegError(f"The weight-averaging fraction must be a number from 0 (the parent's weights) to 1 "
                                  f"(the fine-tuned weights, no averaging), got {fraction!r}.")
    return float(fraction)


def average_weights(parent: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor],
                    fraction: float) -> dict[str, torch.Tensor]:
    """``(1 - fraction) * parent + fraction * tuned`` for every floating-point tensor; other tensors (counters)
    are taken from ``tuned``. Both must hold the same names and shapes."""
    fraction = check_fraction(fraction)
    if set(parent) != set(tuned):
        missing, extra = sorted(set(parent) - set(tuned)), sorted(set(tuned) - set(parent))
        raise KidneyTumorSegError(f"The two networks differ: only in the parent {missing[:5]}, only in the fine-tuned "
                                  f"one {extra[:5]}; weights can only be averaged between a network and its own "
                                  f"fine-tuned copy.")
    out = {}
    for name, new in tuned.items():
        old = parent[name]
        if old.shape != new.shape:
            raise KidneyTumorSegError(f"Tensor {name} has shape {tuple(old.shape)} in the parent and "
                                      f"{tuple(new.shape)} in the fine-tuned network; they cannot be averaged.")
        if new.is_floating_point():
            mixed = old.to(torch.float32).lerp(new.to(torch.float32), fraction)
            out[name] = mixed.to(new.dtype).contiguous()
        else:
            out[name] = new.clone()
    return out


def write_averaged_package(parent: ModelPackage, tuned: ModelPackage, fraction: float,
                           folder: str | os.PathLike[str], *, version: str, description: str = "") -> Path:
    """A package with ``tuned``'s manifest whose segmenters are averaged with ``parent``'s members of the same name
    (other members, such as the localizer, are ``tuned``'s). Returns the folder."""
    averaged = {}
    for member in tuned.members:
        if member.role == "localizer":
            continue
        if member.name not in {m.name for m in parent.members}:
            raise KidneyTumorSegError(f"{parent.name}@{parent.version} has no member {member.name!r}; "
                                      f"give the package that {tuned.name}@{tuned.version} was fine-tuned from.")
        averaged[member.name] = average_weights(load_member_weights(parent, member.name),
                                                load_member_weights(tuned, member), fraction)
    provenance = {**tuned.provenance, "weight_averaging": {"parent": f"{parent.name}@{parent.version}",
                                                           "fraction_fine_tuned": float(fraction)}}
    return write_package_version(tuned, folder, version=version, weights=averaged, provenance=provenance,
                                 description=description or None, overwrite=True)
