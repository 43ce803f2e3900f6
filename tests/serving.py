"""`tonic serve` started as a user starts it, on a terminal of its own, with its URL; and
Debian's Chromium driven by Playwright (pointed at the system browser: Playwright's own
browser download is not used)."""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import terminal
from tests.helpers import required_engines

URL = re.compile(rb"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)")
CHROMIUM = "/usr/bin/chromium"
# As the machine's notes say: without the networking flags, Chromium's connections to
# Google's hosts are refused by this closed network at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Served:
    """`tonic serve NOTEBOOKS` in `folder` (options first), until `stop`."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        self.pid, self.master = terminal.spawn(["serve", "--port", "0", *args], folder)
        seen = terminal.lines(self.master, b"?token=", timeout=60)
        found = next((URL.search(line) for _, line in seen if URL.search(line)), None)
        if found is None:
            self.stop()
            pytest.fail(f"tonic serve printed no URL: {[line for _, line in seen]}")
        self.port, self.token = int(found.group(1)), found.group(2).decode()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/?token={self.token}"
        self.shown: list[bytes] = [line for _, line in seen]

    def lines(self, until: bytes, timeout: float = 60) -> list[bytes]:
        got = [terminal.visible(line) for _, line in terminal.lines(self.master, until, timeout)]
        self.shown += got
        return got

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return request(self.base + path, headers=headers)

    def stop(self) -> int:
        """Ctrl-C on its terminal; its exit status."""
        master, self.master = self.master, -1
        code = terminal.interrupt(self.pid, master)
        if code is None:
            pytest.fail("tonic serve did not end on Ctrl-C")
        return code


@contextmanager
def served(folder: Path, *args: str) -> Iterator[Served]:
    server = Served(folder, *args)
    try:
        yield server
    finally:
        if server.master >= 0:
            assert server.stop() == 0


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def require_browser() -> None:
    """Skip a test that needs Chromium where there is none, or fail where CI requires it
    (TONIC_REQUIRE_ENGINES names chromium)."""
    missing = None
    if shutil.which(CHROMIUM) is None:
        missing = f"no {CHROMIUM} (make browser installs Debian's chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright for Python is not installed (make setup)"
    if missing is None:
        return
    if "chromium" in required_engines():
        pytest.fail(f"the browser is required here but cannot run: {missing}")
    pytest.skip(missing)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
