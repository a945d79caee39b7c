"""A real headless Chromium for tests, driven through the system chromedriver's W3C WebDriver HTTP API.

No Python WebDriver package is needed (the protocol is JSON over HTTP; ``urllib`` speaks it), and no browser is
downloaded: Debian's ``chromium`` and ``chromium-driver`` packages, which ``scripts/install.sh`` installs when
``/usr/bin/chromium`` is missing. Chromium starts with a fresh profile and every background service that could
reach the network turned off, so a page's own requests are the only ones.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def chromium_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One chromedriver process and one Chromium session; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        binaries = chromium_binaries()
        if binaries is None:
            raise RuntimeError("chromium and chromedriver are not installed: run `bash scripts/install.sh` (as root)")
        self.browser, driver = binaries
        self.profile = tempfile.mkdtemp(prefix="refinery-chromium-")
        self.port = _free_port()
        self.process = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                if self._call("GET", "/status")["value"].get("ready"):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.close()
                raise RuntimeError("chromedriver did not start within 30 s")
            time.sleep(0.1)
        options = {
            "binary": self.browser,
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
        }
        capabilities = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", capabilities)["value"]["sessionId"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def open(self, path: Path) -> None:
        """Load a local page (file://) and wait until it has loaded, images included."""
        self._call("POST", f"/session/{self.session}/url", {"url": Path(path).resolve().as_uri()})

    def run(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page and return its value."""
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})[
            "value"
        ]

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._call("DELETE", f"/session/{self.session}")
        except OSError:
            pass
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


#: Everything a page check needs, measured in the page: what failed to render, what reached beyond file:/data:,
#: text drawn outside its SVG, the document's overflow, and every ``data-summary`` figure.
PAGE_PROBE = """
const problems = {images: [], svgs: [], remote: [], clipped: []};
for (const img of document.images) {
  if (!img.complete || img.naturalWidth === 0) problems.images.push(img.getAttribute('src'));
}
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  if (box.width <= 0 || box.height <= 0 || svg.childElementCount === 0)
    problems.svgs.push(svg.getAttribute('aria-label'));
  for (const text of svg.querySelectorAll('text')) {  // on screen, transforms (rotated labels) included
    const b = text.getBoundingClientRect();
    if (b.width > 0 && (b.left < box.left - 1 || b.right > box.right + 1 || b.top < box.top - 1 ||
                        b.bottom > box.bottom + 1))
      problems.clipped.push(text.textContent);
  }
}
const urls = performance.getEntriesByType('resource').map(e => e.name);
for (const el of document.querySelectorAll('[src], link[href]')) urls.push(el.src || el.href);
for (const url of new Set(urls)) if (!/^(file|data):/.test(url)) problems.remote.push(url);
const summary = {};
for (const el of document.querySelectorAll('[data-summary]')) {
  summary[el.getAttribute('data-summary')] = el.getAttribute('data-value') || el.textContent.trim();
}
return {problems, summary, resources: urls.length, images: document.images.length,
        svgs: document.querySelectorAll('svg').length,
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))};
"""


def probe(browser: Browser, page: Path) -> dict[str, Any]:
    browser.open(page)
    return browser.run(PAGE_PROBE)
