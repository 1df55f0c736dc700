"""A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol.

`Browser` starts it on a page and offers the three things the kiosk tests need:
evaluate JavaScript in the page, wait for a condition there, take a screenshot.
The page's viewport is exactly `size` (the DevTools protocol's device metrics: headless
`--window-size` alone leaves room for window chrome the screen does not have), so
screenshots and layout checks are those of a 800×480 or 1024×600 display.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, url: str, size: tuple[int, int] = (1280, 800)) -> None:
        assert CHROMIUM, "Debian's chromium package is needed (scripts/bootstrap.sh)"
        self._dir = Path(tempfile.mkdtemp(prefix="sukumo-chromium-"))
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={self._dir}",
             f"--window-size={size[0]},{size[1]}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self._dir / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                    timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10)
        self._ids = itertools.count(1)
        self.resize(size)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        self._ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == n:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"in the page, never true: {expression}")

    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)
        self.wait_for(f"innerWidth === {size[0]} && innerHeight === {size[1]}")

    def screenshot(self, path: Path) -> Path:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        # A PNG's IHDR: width and height at bytes 16-24. The real display's size or fail.
        shot = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
        assert shot == self.size, f"screenshot {shot}, viewport {self.size}"
        path.write_bytes(data)
        return path

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self._dir, ignore_errors=True)
