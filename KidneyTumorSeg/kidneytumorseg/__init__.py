"""KidneyTumorSeg engine: image I/O and geometry, metrics, and (later) networks, predictor and model packages.

The engine imports neither slicer nor Qt, so the Slicer module, the web front-end, the command line and the
training package can all use it.
"""

__version__ = "0.1.0"
