#!/usr/bin/env bash
# The main job, from a fresh clone: set up ./.venv if needed, then segment the bundled sample CT
# (KidneyTumorSeg/Resources/SampleData, a synthetic CT made from a real KiTS23 mask) with the bundled
# model kits-demo. Writes the label map, a 3D Slicer .seg.nrrd and a PNG overlay to demo_output/ (or $1)
# and prints the kidney, tumor and cyst volumes in ml. Not for clinical use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-demo_output}"
.venv/bin/kidneytumorseg predict -i KidneyTumorSeg/Resources/SampleData -o "$out" --model kits-demo --overlay
