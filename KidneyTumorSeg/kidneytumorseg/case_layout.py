"""File names of a case folder, shared by the KiTS23 layout, the synthetic datasets and the corrections the
Slicer module exports (``case_<id>/imaging.nii.gz``, ``segmentation.nii.gz`` and, for a correction,
``correction.json`` written last). One definition for the writers and the readers."""

IMAGE_NAME = "imaging.nii.gz"
LABEL_NAME = "segmentation.nii.gz"
CORRECTION_RECORD = "correction.json"  # its presence marks a completely exported correction
