"""``kidneytumorseg-train``: the training package's command line.

Subcommands so far: ``synth`` (one synthetic CT from a mask), ``build-dataset`` (a whole synthetic
KiTS-format dataset) and ``preview`` (a PNG montage of any CT with an optional mask).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.image_io import read_image, read_label_map, write_image_atomic
from kidneytumorseg_training.cli import export, finetune, prepare, recipe, train

# Subcommand modules with ``add_parser(subparsers)`` setting ``handler`` (the engine CLI's pattern).
PIPELINE_MODULES = (prepare, train, export, finetune, recipe)

logger = logging.getLogger("kidneytumorseg_training")


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a spacing: give three positive numbers in mm, left-right,anterior-posterior,"
            f"superior-inferior, e.g. 1.5,1.5,3"
        )
    return values  # type: ignore[return-value]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kidneytumorseg-train", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a synthetic CT for one KiTS mask")
    synth.add_argument("mask", type=Path, help="KiTS label map (0 bg, 1 kidney, 2 tumor, 3 cyst)")
    synth.add_argument("-o", "--output", type=Path, required=True, help="CT to write (.nii.gz / .nrrd / .mha)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same image")
    synth.add_argument("--phase", choices=["unenhanced", "corticomedullary", "nephrographic", "excretory"],
                       help="contrast phase (default: drawn from the seed)")
    synth.add_argument("--spacing", type=_spacing, help="resample the mask first to LR,AP,SI mm, e.g. 1.5,1.5,3")
    synth.add_argument("--mask-output", type=Path, help="where to write the (resampled) mask next to the CT")
    synth.add_argument("--preview", type=Path, help="also write a PNG montage here")

    build = commands.add_parser("build-dataset", help="build a synthetic KiTS-format dataset from a mask folder")
    build.add_argument("source", type=Path, help="folder with case_XXXXX/segmentation.nii.gz")
    build.add_argument("destination", type=Path, help="output folder (finished cases in it are kept)")
    build.add_argument("--spacing", type=_spacing, help="resample to LR,AP,SI mm first, e.g. 1.5,1.5,3")
    build.add_argument("--jobs", type=int, default=2, help="parallel worker processes (default 2)")
    build.add_argument("--seed", type=int, default=0, help="base seed (each case's seed derives from it)")
    build.add_argument("--cases", help="comma-separated case names to build (default: all)")
    build.add_argument("--limit", type=int, help="build only the first N cases")
    build.add_argument("--no-preview", action="store_true", help="skip the preview PNGs")

    for module in PIPELINE_MODULES:
        module.add_parser(commands)

    preview = commands.add_parser("preview", help="write a PNG montage of a CT with its mask outlined")
    preview.add_argument("image", type=Path)
    preview.add_argument("mask", type=Path, nargs="?")
    preview.add_argument("-o", "--output", type=Path, required=True)
    return parser


def _synth(args: argparse.Namespace) -> int:
    from kidneytumorseg_training.synthetic.generator import generate_ct
    from kidneytumorseg_training.synthetic.preview import save_preview
    from kidneytumorseg_training.synthetic.resample import resample_to_spacing
    from kidneytumorseg_training.synthetic.tissues import Phase

    mask = read_label_map(args.mask)
    if args.spacing:
        mask = resample_to_spacing(mask, args.spacing, is_label=True)
    started = time.perf_counter()
    synthetic = generate_ct(mask, args.seed, Phase(args.phase) if args.phase else None)
    write_image_atomic(synthetic.image, args.output)
    if args.mask_output:
        write_image_atomic(mask, args.mask_output)
    if args.preview:
        save_preview(synthetic.image, mask, args.preview, title=f"{args.mask.parent.name} {synthetic.phase.value}")
    logger.info("wrote %s (%s phase, size %s) in %.1f s", args.output, synthetic.phase.value,
                synthetic.image.GetSize(), time.perf_counter() - started)
    return 0


def _build(args: argparse.Namespace) -> int:
    from kidneytumorseg_training.synthetic.dataset import build_dataset

    started = time.perf_counter()
    report = build_dataset(
        args.source, args.destination, spacing=args.spacing, jobs=args.jobs, base_seed=args.seed,
        cases=args.cases.split(",") if args.cases else None, limit=args.limit, preview=not args.no_preview,
    )
    logger.info("built %d case(s), kept %d, failed %d in %.1f s", len(report.built), len(report.kept),
                len(report.failed), time.perf_counter() - started)
    for name, reason in report.failed.items():
        sys.stderr.write(f"error: {name}: {reason}\n")
    return 1 if report.failed else 0


def _preview(args: argparse.Namespace) -> int:
    from kidneytumorseg_training.synthetic.preview import save_preview

    image = read_image(args.image)
    mask = read_label_map(args.mask) if args.mask else None
    save_preview(image, mask, args.output, title=args.image.name)
    logger.info("wrote %s", args.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    handlers = {"synth": _synth, "build-dataset": _build, "preview": _preview}
    try:
        return int(handlers[args.command](args) if args.command in handlers else args.handler(args))
    except KidneyTumorSegError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cancelled\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
