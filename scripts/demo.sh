#!/usr/bin/env bash
# The main job, from a fresh clone: set up ./.venv if needed, then make a synthetic abdominal CT from the
# bundled KiTS23-derived sample mask and write it with a preview PNG. (Once a trained model is bundled,
# this segments the bundled sample CT instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-demo_output}"
sample=Testing/fixtures/synthetic/case_00112
mkdir -p "$out/case_00112"
.venv/bin/kidneytumorseg-train synth "$sample/segmentation.nii.gz" --seed 0 \
  -o "$out/case_00112/imaging.nii.gz" --mask-output "$out/case_00112/segmentation.nii.gz" \
  --preview "$out/case_00112/preview.png"
echo "Wrote $out/case_00112/imaging.nii.gz (synthetic CT), its mask, and $out/case_00112/preview.png"
