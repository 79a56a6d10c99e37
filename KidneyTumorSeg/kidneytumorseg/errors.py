"""Error types the engine raises. Each message names the problem and says what to do about it."""

from __future__ import annotations


class KidneyTumorSegError(Exception):
    """Base class for errors a user can act on."""


class InputImageError(KidneyTumorSegError, ValueError):
    """An input file or array is not what the operation needs (format, dimension, labels, intensities)."""


class GeometryMismatchError(KidneyTumorSegError, ValueError):
    """Two images that must share a voxel grid (size, spacing, origin, direction) do not."""


class InsufficientMemoryError(KidneyTumorSegError, MemoryError):
    """The operation would need more memory than the machine has available."""


class MissingInputError(KidneyTumorSegError, FileNotFoundError):
    """A file or case folder the operation needs does not exist."""
