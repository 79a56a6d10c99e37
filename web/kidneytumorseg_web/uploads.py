"""Uploading a CT: one HTTP POST per file, streamed to the server's upload folder under a size limit.

The page posts the file's bytes to ``/kts/upload?name=<file name>`` (the token in a header); the body is
written chunk by chunk and the request is refused as soon as it passes ``max_bytes`` (413, with a message
that says the limit), so an oversized upload never fills the memory or the disk. The page checks the size
first too, so the usual case never starts sending. trame's own file widget would instead carry the whole
file through the websocket as one message, with no limit the server could enforce early.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kidneytumorseg_web.paths import PathRefused, safe_upload_name

LOGGER = logging.getLogger("kidneytumorseg_web")

UPLOAD_ROUTE = "/kts/upload"
_CHUNK = 1 << 20


def limit_message(size: int | None, max_bytes: int) -> str:
    got = f" ({size / 1e6:.1f} MB)" if size is not None else ""
    return (f"The file is too large{got}: this server accepts uploads up to {max_bytes / 1e6:.0f} MB. Crop or "
            "compress the CT (e.g. save it as .nii.gz), or ask the operator to raise --max-upload-mb or to put "
            "the file into a data folder.")


def make_upload_handler(upload_dir: Path, max_bytes: int,
                        on_uploaded: Callable[[Path, str], Awaitable[str]]) -> Callable[[Any], Awaitable[Any]]:
    """An aiohttp handler storing the body as ``upload_dir/<uuid>-<name>``; ``on_uploaded(path, name)`` opens it
    and returns the message shown to the user (it raises ValueError with the reason when it cannot)."""
    from aiohttp import web

    async def upload(request: Any) -> Any:
        try:
            name = safe_upload_name(request.query.get("name", ""))
        except PathRefused as error:
            return web.json_response({"ok": False, "message": str(error)}, status=400)
        declared = request.content_length
        if declared is not None and declared > max_bytes:
            return web.json_response({"ok": False, "message": limit_message(declared, max_bytes)}, status=413)
        upload_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".upload-", suffix=f"-{name}", dir=upload_dir)
        target = Path(temp_name)
        size = 0
        try:
            with os.fdopen(handle, "wb") as stream:
                async for chunk in request.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _TooLarge
                    stream.write(chunk)
            final = target.with_name(target.name.lstrip("."))
            target.rename(final)
            target = final
        except _TooLarge:
            target.unlink(missing_ok=True)
            LOGGER.warning("Refused an upload of %s: more than %d bytes", name, max_bytes)
            return web.json_response({"ok": False, "message": limit_message(None, max_bytes)}, status=413)
        except OSError as error:
            target.unlink(missing_ok=True)
            return web.json_response({"ok": False, "message": f"The server could not store the upload ({error}); "
                                      "ask the operator to free disk space."}, status=507)
        LOGGER.info("Received %s (%.1f MB)", name, size / 1e6)
        try:
            message = await on_uploaded(target, name)
        except ValueError as error:
            with contextlib.suppress(OSError):
                target.unlink()
            return web.json_response({"ok": False, "message": str(error)}, status=422)
        return web.json_response({"ok": True, "message": message})

    return upload


class _TooLarge(Exception):  # noqa: N818 - internal control flow
    pass


# The page's side: check the size, then POST the file with the token; the reply's message goes to the page.
UPLOAD_JS = """
async function ktsUpload(file, maxBytes) {
  if (!file) { return; }
  const state = window.trame.state;
  if (file.size > maxBytes) {
    state.set('upload_key', (state.get('upload_key') || 0) + 1);
    state.set('upload_error', `The file is too large (${(file.size / 1e6).toFixed(1)} MB): this server accepts `
      + `uploads up to ${(maxBytes / 1e6).toFixed(0)} MB. Crop or compress the CT (e.g. save it as .nii.gz), or `
      + `ask the operator to raise --max-upload-mb or to put the file into a data folder.`);
    return;
  }
  state.set('upload_error', '');
  state.set('uploading', true);
  try {
    const secret = new URLSearchParams(window.location.search).get('secret') || '';
    const reply = await fetch(`%(route)s?name=${encodeURIComponent(file.name)}`,
      { method: 'POST', body: file, headers: { '%(header)s': secret } });
    let body = {};
    try { body = await reply.json(); } catch (e) { body = { message: await reply.text() }; }
    if (!reply.ok) { state.set('upload_error', body.message || `Upload refused (${reply.status}).`); }
  } catch (e) {
    state.set('upload_error', `The upload failed (${e}); check the connection and try again.`);
  } finally {
    state.set('uploading', false);
    state.set('upload_key', (state.get('upload_key') || 0) + 1);  // a fresh, empty file field
  }
}
window.ktsUpload = ktsUpload;
"""


def upload_script(token_header: str) -> str:
    return UPLOAD_JS % {"route": UPLOAD_ROUTE, "header": token_header}
