"""KidneyTumorSeg: kidney, renal tumor and renal cyst segmentation in CT (3D Slicer scripted module).

This file stays thin: it declares the module. The logic lives in KidneyTumorSegLib (MRML, no Qt) and the
bundled engine package ``kidneytumorseg`` (no slicer, no Qt).
"""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class KidneyTumorSeg(ScriptedLoadableModule):
    """Module declaration: title, category, contributors, help and acknowledgement."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Kidney Tumor Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["KidneyTumorSeg developers"]
        self.parent.helpText = (
            "Segments kidney, renal tumor and renal cyst in abdominal CT with an ensemble of 3D U-Nets. "
            "Early development: the segmentation panel is not in this version yet. "
            "Not for clinical use. See the project README for the command-line tools."
        )
        self.parent.acknowledgementText = (
            "Built on the KiTS19/KiTS21/KiTS23 challenges (Heller N. et al., arXiv:2307.01984) and the "
            "methods of Isensee & Maier-Hein 2019, Zhao & Zeng 2019, Zang et al. 2021 and the TuNet authors."
        )
