"""MRML logic of the KidneyTumorSeg module (no Qt): volume node -> background engine run -> segmentation
node, corrections export, model store. Filled in by the Slicer-module work; see ../../README.md."""
