"""KidneyTumorSeg in the browser: a trame-slicer front-end over the module's MRML logic (KidneyTumorSegLib).

    kidneytumorseg-web --data-dir /srv/ct --corrections-dir ~/KidneyTumorSeg/corrections
    # then open http://127.0.0.1:8080/ (or the URL it prints, with ?secret=TOKEN when --token is given)

``paths`` (folder confinement) and ``serving`` (bind / token / origin checks) import nothing heavy and are
tested without a browser; ``app`` (the trame UI) and ``session`` (state and background jobs) import
trame-slicer, VTK and Slicer's MRML core.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
