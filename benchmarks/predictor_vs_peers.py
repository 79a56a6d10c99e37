"""Benchmark: our sliding-window predictor against nnU-Net v2's and MONAI's, same network, weights and volume.

    .venv/bin/python benchmarks/predictor_vs_peers.py                    # defaults: about 8 minutes on 2 cores
    .venv/bin/python benchmarks/predictor_vs_peers.py --mirror --repeats 5
    .venv/bin/python benchmarks/predictor_vs_peers.py --spacing 3 1.5 1.5 --patch 64 128 128 --features 32

Needs the ``peers`` extra (``.venv/bin/pip install -e ".[peers]" -c constraints.txt``: nnunetv2, which pulls in
torchvision; torchvision must never be imported here, and this script refuses to import it).

What runs, on the same preprocessed volume (float32 ``(S, P, L)``, normalised, already at the model spacing):

- ``ours``: :func:`kidneytumorseg.sliding_window.sliding_window_predict`, batch 1, CPU.
- ``nnU-Net v2``: ``nnUNetPredictor.predict_sliding_window_return_logits`` of nnunetv2 from PyPI, set up with
  ``manual_initialization`` from a minimal plans dict (the patch size) and a dataset.json with as many labels
  as the network has outputs; nothing trained, nothing read from disk.
- ``MONAI``: ``monai.inferers.sliding_window_inference(..., mode="gaussian", sigma_scale=0.125)``; it has no
  test-time mirroring, so with ``--mirror`` the function it calls averages the mirrored copies itself.

All three get the same network (``build_network(plan_network(patch, spacing, base_features, max_features))``,
random weights from ``torch.manual_seed(0)``, eval mode, no deep supervision; each process loads the same saved
weights) and the same parameters: tile ``--patch``; our ``tile_overlap`` = 1 - nnU-Net's ``tile_step_size`` =
MONAI's ``overlap``; Gaussian sigma = 1/8 of the tile per axis (nnU-Net's fixed value); the same mirrored axes
(none by default, for speed; ``--mirror``: all three, 8 forward passes per tile); a volume shorter than the
tile padded with 0, centred, by all three.

What still differs at those parameters (read in the sources of nnunetv2 2.x and MONAI 1.x):

1. What is averaged: ours averages the *softmax* of the tiles and mirrored copies; nnU-Net and MONAI average
   what the network returns, *logits*, and the softmax comes afterwards.
2. The Gaussian: ours and MONAI sample exp(-d^2 / 2 sigma^2) about the tile centre (n - 1) / 2, nnU-Net
   filters a delta at n // 2 (half a voxel off on even tiles); MONAI raises every weight below 1e-3 to 1e-3.
3. Precision: nnU-Net sums the weighted outputs and the weights in float16 (``torch.half``, also on the CPU),
   with its Gaussian scaled to a peak of 10 and stored as float16 (the tails below 6e-8 underflow to its
   smallest weight), and returns float16; ours and MONAI use float32.
4. Tile placement: nnU-Net and ours spread the tiles evenly, MONAI steps by ``int(tile * (1 - overlap))`` and
   moves only the last tile back. They coincide when each axis longer than the tile is ``tile + k * step``
   voxels, so by default the volume is zero-padded (0 = the normalised mean) to such a size first
   (``--no-align`` keeps its size).

Rows of the table:

- timed, median of ``--repeats`` (interleaved, rotated order): ``ours`` (float32; on a CPU the network runs
  channels-last with prepacked oneDNN convolutions, :mod:`kidneytumorseg.cpu_inference`); nnU-Net and MONAI
  *as shipped* (bare network, their own Gaussian and precision), the baseline the goal refers to; ours with
  that fast path off (the eager PyTorch network, as the peers run it) and ours in bfloat16; ``eager network
  forward alone``, the eager network over the same tiles and mirrored copies with nothing blended (the floor
  the peers share, to show what dominates); our coarse-to-fine mode and the localizer network.
- once each (n=1, ``--no-agreement-rows`` skips them), to take differences 1-3 apart: nnU-Net and MONAI with
  the network wrapped to return its softmax (so they average probabilities, as ours) and blending with our
  Gaussian map (MONAI through its ``roi_weight_map`` argument, nnU-Net by replacing its ``compute_gaussian``
  during the call); nnU-Net once more with its float16 buffers and Gaussian made float32 (its module's
  ``torch.half`` replaced by float32 during the call). Those last rows are the identical-settings comparison.
  ``--all-variants`` adds the softmax-averaging peers with their own Gaussian.
- ``--profile``: one more run of ours under cProfile, its most expensive functions listed below the table.

Compared with ours: the largest absolute difference over all voxels and classes between a row's probabilities
and ours (repeat-1 outputs; softmax applied to the logits of the as-shipped peers), its 99.9th percentile over
voxels, and the share of voxels whose argmax label equals ours.

Coarse-to-fine (``ours, coarse-to-fine``): :func:`kidneytumorseg.predictor_core.predict` with a localizer and
:class:`CascadeSettings` (margin ``--margin-mm``, at most 2 boxes, no post-processing). Random localizer weights
would draw meaningless boxes, so that localizer is a fixed module holding the case's reference mask
(``segmentation.nii.gz`` > 0) on the localizer's coarse grid as a buffer and returning it as logits: the boxes
a perfect localizer would give. Because that forward costs nothing, a real-sized localizer (the U-Net planned
for ``--localizer-patch`` at ``--localizer-spacing``, random weights, through
:func:`kidneytumorseg.predictor_core.localize`, its boxes unused) is timed as its own row and added in the
``total`` row. The labels from the boxes are compared with the full run's (argmax) on every box voxel and on
the reference kidney-and-mass voxels.

How it is measured: after one discarded warm-up run, each measurement is a fresh process (this script with
``--only``) that loads the volume and the weights, times the one sliding-window call with ``time.perf_counter``
(no warm-up call inside it: every row pays the same first-call costs; for the as-shipped peers the final
softmax is outside the timing) and reports its peak resident memory (``ru_maxrss``, imported libraries
included) and the resident memory just before the call; ``+MB in call`` is the difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python has put benchmarks/ on sys.path; imported by path (Testing/engine/test_peer_agreement.py)
# it has not, and the helpers in benchmarks/peer_comparison/ need it.
BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from peer_comparison.measurement import measure, run_all  # noqa: E402
from peer_comparison.preparation import DEFAULT_CASE, prepare  # noqa: E402
from peer_comparison.report import package_version, report  # noqa: E402
from peer_comparison.runners import predict_probabilities  # noqa: E402
from peer_comparison.torchvision_guard import block_torchvision  # noqa: E402
from peer_comparison.variants import OURS, SlidingWindowConfig, Variant  # noqa: E402

# What Testing/engine/test_peer_agreement.py, which imports this script by path, uses of the peer adapters.
__all__ = ["OURS", "SlidingWindowConfig", "Variant", "benchmark", "block_torchvision", "main",
           "predict_probabilities"]

logger = logging.getLogger("predictor_vs_peers")


def benchmark(args: argparse.Namespace) -> None:
    """Prepare the case, run every measurement, print the report."""
    for package in ("nnunetv2", "monai"):
        if package_version(package) == "not installed":
            raise SystemExit(f"{package} is not installed: .venv/bin/pip install -e '.[peers]' -c constraints.txt")
    with tempfile.TemporaryDirectory(prefix="predictor_vs_peers-") as folder:
        workdir = Path(folder)
        setup = prepare(args, workdir)
        logger.info("Volume %s at %s mm, %d tiles of %s, %d parameters.", setup.shape, setup.spacing, setup.tiles,
                    setup.patch_size, setup.parameters)
        start = time.perf_counter()
        results = run_all(args, workdir, script=Path(__file__).resolve())
        report(args, setup, workdir, results, (time.perf_counter() - start) / 60)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE,
                        help="folder with imaging.nii.gz and segmentation.nii.gz (default: synthetic case_00112)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 2.0, 2.0), metavar=("SI", "AP", "LR"),
                        help="model spacing in mm, (S, P, L) order (default 3 2 2)")
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 128, 128), metavar=("S", "P", "L"),
                        help="tile size in voxels (default 64 128 128)")
    parser.add_argument("--features", type=int, default=32, help="features of the first stage (default 32)")
    parser.add_argument("--max-features", type=int, default=320, help="feature cap (default 320)")
    parser.add_argument("--overlap", type=float, default=0.5, help="tile overlap (default 0.5: step 0.5)")
    parser.add_argument("--mirror", action="store_true",
                        help="mirror over all three axes (8 passes per tile); off by default, for speed")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    parser.add_argument("--agreement-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="run the identical-settings variants of nnU-Net and MONAI once each (default on)")
    parser.add_argument("--profile", action="store_true", help="profile one run of ours with cProfile (once)")
    parser.add_argument("--all-variants", action="store_true",
                        help="also run the softmax-averaging peers with their own Gaussian once each")
    parser.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                        help="zero-pad the volume so MONAI's tiles start where the others' do (default on)")
    parser.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=True,
                        help="time our coarse-to-fine mode too (default on)")
    parser.add_argument("--margin-mm", type=float, default=15.0, help="cascade box margin (default 15 mm)")
    parser.add_argument("--localizer-spacing", type=float, nargs=3, default=(6.0, 6.0, 6.0),
                        help="the localizer's spacing (default 6 6 6)")
    parser.add_argument("--localizer-patch", type=int, nargs=3, default=(32, 64, 64),
                        help="the localizer's tile (default 32 64 64)")
    parser.add_argument("--localizer-features", type=int, default=16, help="localizer first-stage features (16)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--save-output", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    block_torchvision()
    if args.only:
        if args.workdir is None or args.result is None:
            raise SystemExit("--only needs --workdir and --result (this script passes them to itself).")
        args.result.write_text(json.dumps(measure(args.only, args.workdir, args.save_output)))
        return
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1.")
    benchmark(args)


if __name__ == "__main__":
    main()
