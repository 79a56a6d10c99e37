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


class ModelPackageError(KidneyTumorSegError, ValueError):
    """A model package is invalid, damaged, tampered with or missing a file."""


class ModelNotFoundError(KidneyTumorSegError, LookupError):
    """No model of the requested name (and version) is in the model store."""


class Cancelled(KidneyTumorSegError):  # noqa: N818 - the name the engine contract uses
    """The user cancelled a running operation; nothing was written."""


class NotCTError(InputImageError):
    """The input does not look like a CT in Hounsfield units (MR-like or unscaled intensities)."""


class OutputPathError(KidneyTumorSegError, OSError):
    """Results cannot be written where they were asked to go."""
