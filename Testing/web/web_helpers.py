"""Starting the real ``kidneytumorseg-web`` server for the tests, and speaking wslink's handshake to it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "KidneyTumorSeg" / "Resources" / "SampleData" / "kits-synthetic-00112"
CHROMIUM = Path(os.environ.get("KIDNEYTUMORSEG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = re.compile(r"Serving KidneyTumorSeg at (http://127\.0\.0\.1:(\d+)/)")


def missing_server_requirements() -> str | None:
    """Why the server cannot run here (the web extra is not installed), else None."""
    for module in ("trame_slicer", "trame", "slicer"):
        if importlib.util.find_spec(module) is None:
            return (f"'{module}' is not installed: the web front-end needs the web extra "
                    "(.venv/bin/pip install -e '.[web]' -c constraints.txt)")
    return None


def missing_browser_requirements() -> str | None:
    """Why the browser tests cannot run here, else None. They never download a browser."""
    reason = missing_server_requirements()
    if reason:
        return reason
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (it comes with the web extra; its browsers are never downloaded)"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does, with apt-get); "
                "the tests drive it through executable_path and never download a browser")
    return None


@dataclass
class WebServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path
    root: Path | None = None  # the test's folder (data, corrections, models, work)

    def log_tail(self, chars: int = 6000) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if "WindowResize" not in line)[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def server_environment() -> dict[str, str]:
    """This environment, with the checkout's ``web/`` first on PYTHONPATH (the same files as an editable install)."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT / "web"), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_cli(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI run to completion (for the refusals, which exit before serving)."""
    return subprocess.run([sys.executable, "-m", "kidneytumorseg_web.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=server_environment(), check=False)


def start_server(args: list[str], log: Path, timeout: float = 180) -> WebServer:
    """``kidneytumorseg-web --port 0 ARGS`` in its own process; returns once it logged its URL."""
    rendering = os.environ.get("KIDNEYTUMORSEG_WEB_RENDERING", "egl")  # egl or osmesa
    command = [sys.executable, "-m", "kidneytumorseg_web.cli", "--port", "0", "--rendering", rendering, *args]
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=server_environment())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(log.read_text(errors="replace"))
        if match:
            return WebServer(process, match.group(1), int(match.group(2)), log)
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"The server exited with {process.returncode}:\n{tail}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"The server did not start within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


async def wslink_hello(port: int, secret: str, origin: str | None = None) -> dict[str, Any]:
    """wslink's handshake (what trame's client sends first) with ``secret``; the server's reply."""
    import aiohttp
    import msgpack
    from wslink.chunking import UnChunker, generate_chunks

    message = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello", "args": [{"secret": secret}],
               "kwargs": {}}
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"ws://127.0.0.1:{port}/ws", headers=headers) as socket:
        for chunk in generate_chunks(msgpack.packb(message), 4096):
            await socket.send_bytes(chunk)
        unchunker = UnChunker()
        unchunker.set_max_message_size(1 << 24)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            received = await socket.receive(timeout=30)
            if received.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"Unexpected websocket message {received.type}")
            reply = unchunker.process_chunk(received.data)
            if reply is not None and reply.get("id") == message["id"]:
                return reply
    raise TimeoutError("No reply to wslink.hello")
