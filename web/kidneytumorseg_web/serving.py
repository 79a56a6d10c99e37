"""Who may talk to the server: the bind address, the optional access token and the browser's origin.

* The server binds 127.0.0.1 unless the operator passes another address *and* ``--allow-remote``; then a
  warning is logged (the page shows CT images and can write corrections and new model versions).
* ``--token``: the page must be opened as ``http://HOST:PORT/?secret=TOKEN``. trame's websocket handshake
  (wslink ``hello``) refuses any other secret, and the upload endpoint checks the same token.
* Every websocket and upload request whose ``Origin`` is another site is refused, and on a loopback bind
  the ``Host`` must be a loopback name: a web page the operator happens to visit cannot drive the server
  (cross-site websocket hijacking, DNS rebinding), token or not.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

LOGGER = logging.getLogger("kidneytumorseg_web")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
TOKEN_HEADER = "X-KidneyTumorSeg-Token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
# wslink's default secret: what trame's client sends when the page URL has no ?secret=
DEFAULT_WSLINK_SECRET = "wslink-secret"


class ServingError(ValueError):
    """The server cannot start as asked; the message says which flag to change."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host-header name, without port) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool, token: str | None = None) -> str | None:
    """Refuse a non-loopback bind without ``allow_remote``; with it, the warning to log (else None)."""
    if not host or not host.strip():
        raise ServingError("An empty --host binds every network interface; give an address (127.0.0.1 is the "
                           "default).")
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ServingError(f"Refusing to bind {host}: other machines could open the CT images and write "
                           "corrections. Keep the default --host 127.0.0.1 (and reach it through an SSH tunnel), "
                           "or pass --allow-remote (with --token) to serve the network on purpose.")
    base = (f"Serving on {host}, reachable from other machines: whoever can reach it"
            + (" and has the token" if token else "")
            + " can open the CT images, edit, export corrections and fine-tune models.")
    if not token:
        base += " No --token was given, so anyone on the network can; restart with --token to require one."
    return base + " The traffic is not encrypted: on an untrusted network put a TLS reverse proxy in front."


def check_token(token: str | None) -> str | None:
    """The token as given, if it is usable in a URL as trame's client reads it; else ServingError."""
    if token is None:
        return None
    if not _TOKEN.match(token) or token.isdigit() or token == DEFAULT_WSLINK_SECRET:
        raise ServingError("The --token must be 8 to 128 characters of A-Z a-z 0-9 _ - and not only digits "
                           f"(e.g. {new_token()}).")
    return token


def new_token() -> str:
    """A random token in the accepted alphabet."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.isdigit():
            return token


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; with no expected token every request matches."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(str(given).encode(), expected.encode())


def origin_allowed(origin: str | None, host_header: str | None, bound_loopback: bool) -> bool:
    """Whether a request with this ``Origin`` and ``Host`` comes from our own page.

    No Origin (a non-browser client such as a script) is let through here (the token guards it); a browser's
    Origin must name the same host and port as the request's Host; on a loopback bind the Host itself must
    be a loopback name (DNS rebinding sends the attacker's name)."""
    if not host_header:
        return False
    host_name = urlsplit(f"//{host_header}").hostname or ""
    if bound_loopback and not is_loopback(host_name):
        return False
    if origin is None:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.strip().lower()


def trame_argv(host: str, port: int, token: str | None) -> list[str]:
    """The arguments trame's server is started with (instead of this process's own command line)."""
    return ["--server", "--host", host, "--port", str(port), "--timeout", "0",
            "--authKey", token or DEFAULT_WSLINK_SECRET]


def pin_trame_args(server: Any, argv: list[str]) -> None:
    """Make ``server.start()`` parse exactly ``argv``: not ``sys.argv`` and not ``$TRAME_ARGS``, which could
    otherwise change the bind address or the token behind the checks above."""
    parser = server.cli

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        return argparse.ArgumentParser.parse_known_args(parser, list(argv), namespace)

    parser.parse_known_args = parse_known_args


Handler = Callable[[Any], Awaitable[Any]]


def guard_middleware(token: str | None, bound_loopback: bool, guarded_prefixes: tuple[str, ...]) -> Any:
    """An aiohttp middleware refusing foreign origins (and a wrong token, on the upload endpoints)."""
    from aiohttp import web

    @web.middleware
    async def guard(request: Any, handler: Handler) -> Any:
        path = request.path
        if path == "/ws" or path.startswith(guarded_prefixes):
            if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), bound_loopback):
                LOGGER.warning("Refused %s %s from origin %r (host %r)", request.method, path,
                               request.headers.get("Origin"), request.headers.get("Host"))
                return web.Response(status=403, text="Refused: this page was not opened from this server's "
                                                     "address. Open the server's own URL.")
            if path.startswith(guarded_prefixes):
                given = request.headers.get(TOKEN_HEADER) or request.query.get("secret")
                if not token_matches(given, token):
                    LOGGER.warning("Refused %s %s: wrong or missing token", request.method, path)
                    return web.Response(status=403, text="Refused: wrong or missing access token. Open the page "
                                                         "with the URL the operator gave you (…/?secret=TOKEN).")
        return await handler(request)

    return guard
