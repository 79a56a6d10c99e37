"""Entry point of the ``kidneytumorseg`` command: argparse subcommands, logging setup, user-error handling.

Each subcommand lives in its own module under ``kidneytumorseg.cli`` and provides
``add_parser(subparsers) -> argparse.ArgumentParser`` (which sets ``handler`` to its ``run``) and
``run(args) -> int``. Modules import their heavy dependencies (torch, MONAI) inside ``run``, so ``--help``
stays fast. Add a subcommand by adding its module to ``SUBCOMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kidneytumorseg import __version__
from kidneytumorseg.cli import evaluate, models, predict
from kidneytumorseg.errors import KidneyTumorSegError

SUBCOMMAND_MODULES = (predict, evaluate, models)

LOGGER = logging.getLogger("kidneytumorseg")

# Exit status for errors the user can fix (bad input, missing files), as argparse uses for bad arguments.
USER_ERROR_EXIT_CODE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kidneytumorseg",
        description="Kidney, renal tumor and renal cyst segmentation in abdominal CT (KiTS labels).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    LOGGER.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    User errors (the engine's KidneyTumorSegError types) give one ``error: ...`` line on stderr and exit
    status 2, without a traceback; anything else is a bug and propagates with its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.handler(args))
    except KidneyTumorSegError as error:
        sys.stderr.write(f"error: {error}\n")
        return USER_ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
