"""``kidneytumorseg models list | import | verify | remove``: manage the installed model packages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kidneytumorseg.model_store import MODELS_DIR_ENV, ModelStore, StoreEntry, default_bundled_dir, default_user_dir

NAME = "models"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand (with its own actions) to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME,
        help="list, import, verify or remove model packages",
        description=(
            "Manage the model store: packages bundled with the extension and the ones you imported "
            "(stored in the folder named by $KIDNEYTUMORSEG_MODELS_DIR, else your per-user data folder)."
        ),
    )
    _add_folder_options(parser)
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the installed packages")
    importing = actions.add_parser("import", help="install a package .zip or folder")
    importing.add_argument("source", metavar="ZIP_OR_DIR", type=Path, help="package .zip archive or folder")
    importing.add_argument("--overwrite", action="store_true", help="replace an installed NAME@VERSION")
    verifying = actions.add_parser("verify", help="check the SHA-256 of a package's files")
    verifying.add_argument("spec", metavar="NAME[@VERSION]", help="package (default version: the newest)")
    removing = actions.add_parser("remove", help="delete a package you imported")
    removing.add_argument("spec", metavar="NAME@VERSION", help="package to delete")
    for action in (listing, importing, verifying, removing):
        _add_folder_options(action)
    parser.set_defaults(handler=run)
    return parser


def _add_folder_options(parser: argparse.ArgumentParser) -> None:
    # Accepted before or after the action; SUPPRESS keeps the action's parser from resetting a value given
    # before it.
    parser.add_argument(
        "--store-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"your model folder (default: ${MODELS_DIR_ENV} or the per-user data folder)",
    )
    parser.add_argument(
        "--bundled-dir", type=Path, default=argparse.SUPPRESS, help="folder of the packages shipped with the extension"
    )


def format_table(entries: list[StoreEntry]) -> str:
    """Installed packages as a fixed-width table: name, version, source, description."""
    rows = [("name", "version", "source", "description")]
    rows += [(e.name, e.version, e.source, e.description) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]).rstrip() for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Carry out the action; print its result to stdout and return the exit status."""
    store_dir = getattr(args, "store_dir", None)
    bundled_dir = getattr(args, "bundled_dir", None)
    store = ModelStore(bundled_dir or default_bundled_dir(), store_dir or default_user_dir())
    if args.action == "list":
        entries = store.list()
        if entries:
            sys.stdout.write(format_table(entries))
        else:
            sys.stdout.write(
                f"No model packages installed (looked in {store.user_dir} and {store.bundled_dir}).\n"
                "Import one with: kidneytumorseg models import PACKAGE.zip\n"
            )
    elif args.action == "import":
        entry = store.import_package(args.source, overwrite=args.overwrite)
        sys.stdout.write(f"Imported {entry.spec} into {entry.path}\n")
    elif args.action == "verify":
        package = store.verify(args.spec)
        sys.stdout.write(
            f"{package.name}@{package.version}: all {len(package.members)} member files match their SHA-256 "
            f"({package.path})\n"
        )
    elif args.action == "remove":
        entry = store.remove(args.spec)
        sys.stdout.write(f"Removed {entry.spec} ({entry.path})\n")
    return 0
