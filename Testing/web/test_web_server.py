"""The running server's defences, without a browser: bind refusal, token, origin, upload limit and folders.

One real ``kidneytumorseg-web`` process (loopback, free port, a token, a 3 MB upload limit) serves the module;
the refusals of the command line need no server at all.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from web_helpers import SAMPLE_DIR, missing_server_requirements, run_cli, start_server, wslink_hello

from kidneytumorseg_web.serving import TOKEN_HEADER
from kidneytumorseg_web.uploads import UPLOAD_ROUTE

TOKEN = "Test-token_0123456789"


def test_a_non_loopback_bind_is_refused_without_the_flag():
    result = run_cli(["--host", "0.0.0.0", "--port", "0"])
    assert result.returncode == 2
    assert "Refusing to bind 0.0.0.0" in result.stderr and "--allow-remote" in result.stderr


def test_bad_configurations_are_refused_before_serving(tmp_path):
    assert "--token must be" in run_cli(["--token", "1234"]).stderr
    assert "does not exist" in run_cli(["--data-dir", str(tmp_path / "missing")]).stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = missing_server_requirements()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("web-server")
    (root / "data").mkdir()
    web = start_server(["--token", TOKEN, "--max-upload-mb", "3", "--data-dir", str(root / "data"),
                        "--corrections-dir", str(root / "corrections"), "--models-dir", str(root / "models"),
                        "--work-dir", str(root / "work")], root / "server.log")
    yield web
    web.stop()


def _post(port: int, body: bytes, name: str = "imaging.nii.gz", token: str | None = TOKEN,
          origin: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{UPLOAD_ROUTE}?name={name}", data=body, method="POST")
    if token is not None:
        request.add_header(TOKEN_HEADER, token)
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_wrong_token_is_refused_by_the_websocket(server):
    refused = asyncio.run(wslink_hello(server.port, "wrong-token-123"))
    assert refused["error"]["message"] == "Authentication failed"
    default = asyncio.run(wslink_hello(server.port, "wslink-secret"))  # trame's client without ?secret=
    assert default["error"]["message"] == "Authentication failed"
    accepted = asyncio.run(wslink_hello(server.port, TOKEN))
    assert "error" not in accepted and accepted["result"]["clientID"]


def test_a_websocket_from_another_site_is_refused(server):
    import aiohttp  # with the web extra, as the server fixture

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(wslink_hello(server.port, TOKEN, origin="http://evil.example"))
    assert refused.value.status == 403
    same_site = asyncio.run(wslink_hello(server.port, TOKEN, origin=f"http://127.0.0.1:{server.port}"))
    assert "error" not in same_site


def test_uploads_need_the_token_and_our_origin(server):
    status, text = _post(server.port, b"x", token="wrong-token-123")
    assert status == 403 and "token" in text
    status, _ = _post(server.port, b"x", token=None)
    assert status == 403
    status, _ = _post(server.port, b"x", origin="http://evil.example")
    assert status == 403


def test_an_upload_over_the_limit_is_refused_with_the_limit_in_the_message(server):
    status, text = _post(server.port, b"\0" * 3_500_000)
    assert status == 413
    assert "too large" in text and "3 MB" in text and "--max-upload-mb" in text
    assert not list((Path(server.log).parent / "work" / "uploads").glob("*imaging*"))  # nothing left behind


def test_an_upload_that_is_not_a_ct_is_refused(server):
    status, text = _post(server.port, b"x", name="notes.txt")
    assert status == 400 and "not a CT file" in text
    status, text = _post(server.port, b"not a volume", name="broken.nii.gz")
    assert status == 422 and "could not be read" in text


def test_the_sample_uploads_and_opens(server):
    status, text = _post(server.port, (SAMPLE_DIR / "imaging.nii.gz").read_bytes(), name="imaging.nii.gz")
    assert status == 200, text
    assert "Opened imaging (55x190x190 voxels)" in text
