"""``kidneytumorseg-web``: serve the KidneyTumorSeg page (trame-slicer) on this machine.

    kidneytumorseg-web                                   # http://127.0.0.1:8080/, the bundled sample
    kidneytumorseg-web --data-dir /srv/ct --corrections-dir /srv/corrections
    kidneytumorseg-web --host 0.0.0.0 --allow-remote --token "$TOKEN"    # other machines, on purpose

The checks that refuse a bad configuration (bind address, token, folders) run before anything heavy is
imported, so a refusal is immediate. Rendering is off screen: EGL by default, OSMesa with --rendering osmesa.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from kidneytumorseg_web.paths import DataFolders
from kidneytumorseg_web.serving import ServingError, check_bind, check_token, is_loopback, trame_argv

LOGGER = logging.getLogger("kidneytumorseg_web")

TOKEN_ENV = "KIDNEYTUMORSEG_WEB_TOKEN"
RENDER_WINDOWS = {"egl": "vtkEGLRenderWindow", "osmesa": "vtkOSOpenGLRenderWindow", "x": "vtkXOpenGLRenderWindow"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kidneytumorseg-web", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve = parser.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs "
                       "--allow-remote")
    serve.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address "
                       "(other machines can then connect; a warning is logged)")
    serve.add_argument("--port", type=int, default=8080, help="port (0: a free one, logged at start)")
    serve.add_argument("--token", help="access token: the page must be opened with ?secret=TOKEN (default: "
                       f"${TOKEN_ENV}, which keeps it out of the process list; none: no token)")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", action="append", default=[], type=Path, metavar="DIR",
                      help="a server folder whose CT files the page may open (repeatable); nothing else is readable")
    data.add_argument("--corrections-dir", type=Path, default=Path("~/KidneyTumorSeg/corrections"),
                      help="where Export correction writes and Fine-tune reads")
    data.add_argument("--max-upload-mb", type=float, default=1024, help="largest CT upload accepted, in MB")
    data.add_argument("--work-dir", type=Path, help="uploads and fine-tuning runs (default: a temporary folder, "
                      "removed at exit)")
    data.add_argument("--no-sample", action="store_true", help="do not offer the bundled sample CT")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--models-dir", type=Path, help="the user model store, where fine-tuned versions go "
                        "(default: the engine's, $KIDNEYTUMORSEG_MODELS_DIR or the per-user data folder)")
    engine.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    engine.add_argument("--engine-threads", type=int, help="torch threads of each engine run (default: all cores)")
    engine.add_argument("--finetune-args", default="", help="extra arguments of kidneytumorseg-train finetune, "
                        "e.g. \"--epochs 2 --iterations 10\"")
    parser.add_argument("--rendering", choices=["egl", "osmesa", "x", "auto"], default="egl",
                        help="VTK's off-screen rendering (auto: VTK's own choice, tries X first)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,  # trame's own loggers are chatty at INFO
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("kidneytumorseg_web", "KidneyTumorSegLib"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        token = check_token(args.token or os.environ.get(TOKEN_ENV) or None)
        warning = check_bind(args.host, args.allow_remote, token)
        if not 0 <= args.port <= 65535:
            raise ServingError(f"--port {args.port} is not a port number (0-65535).")
        if args.max_upload_mb <= 0:
            raise ServingError("--max-upload-mb must be positive.")
        folders = DataFolders(args.data_dir)
        finetune_args = tuple(shlex.split(args.finetune_args))
    except (ServingError, ValueError) as error:
        LOGGER.error("%s", error)
        return 2
    if warning:
        LOGGER.warning("%s", warning)
    if args.rendering != "auto":
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = RENDER_WINDOWS[args.rendering]
    return serve(args, token, folders, finetune_args)


def serve(args: argparse.Namespace, token: str | None, folders: DataFolders, finetune_args: tuple[str, ...]) -> int:
    from trame.app import get_server  # heavy imports only once the configuration is accepted

    from kidneytumorseg.model_store import ModelStore, default_bundled_dir, default_user_dir
    from kidneytumorseg_web.app import WebApp
    from kidneytumorseg_web.serving import pin_trame_args
    from kidneytumorseg_web.session import SAMPLE_CT, WebConfig

    store = ModelStore(default_bundled_dir(), args.models_dir.expanduser() if args.models_dir else default_user_dir())
    config = WebConfig(data_folders=folders, corrections_dir=args.corrections_dir.expanduser(),
                       work_dir=args.work_dir, max_upload_bytes=int(args.max_upload_mb * 1e6), device=args.device,
                       store=store, engine_threads=args.engine_threads, finetune_args=finetune_args,
                       sample=None if args.no_sample else SAMPLE_CT)
    server = get_server("kidneytumorseg-web", client_type="vue3")
    pin_trame_args(server, trame_argv(args.host, args.port, token))
    WebApp(server, config, token=token, bound_loopback=is_loopback(args.host))

    def ready(**_: object) -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{server.port}/" + ("?secret=<token>" if token else "")
        LOGGER.info("Serving KidneyTumorSeg at %s (corrections: %s; models: %s)", url, config.corrections_dir,
                    store.user_dir)

    server.controller.on_server_ready.add(ready)
    server.start(open_browser=False, show_connection_info=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
