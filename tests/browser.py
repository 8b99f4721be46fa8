"""Open a local HTML page in headless Chromium: the DOM after its scripts ran, or a screenshot.

A test harness, not library code (nothing in rdpt/ imports it): tests/test_viewer.py uses it, and it
refreshes the README's screenshot of the viewer::

    python tests/browser.py reports/viewer/toy_easy.html reports/screenshots/viewer.png \
        --fragment 'q=toy_easy-00035/' --size 1280x1100

Needs Debian's ``chromium`` (``apt-get install chromium``) or any Chromium/Chrome on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from rdpt import RdptError
from rdpt.cli import stage

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Offline and quiet: no sandbox (CI runs as root), no GPU, nothing fetched or synced in the background,
# sRGB output so a screenshot's pixels are the page's CSS colours.
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--mute-audio", "--hide-scrollbars", "--force-color-profile=srgb", "--force-device-scale-factor=1",
)
TIMEOUT_S = 60


def find_chromium() -> str | None:
    """Path of a Chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def page_url(path: str | Path, fragment: str = "") -> str:
    url = Path(path).resolve().as_uri()
    return f"{url}#{fragment}" if fragment else url


def _run(args: list[str], what: str) -> str:
    exe = find_chromium()
    if exe is None:
        raise RdptError(f"{what}: no Chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="rdpt-chromium-") as profile:
        try:
            # check=False: a failed run is reported below with the tail of Chromium's stderr
            done = subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", *args], check=False,
                                  capture_output=True, text=True, timeout=TIMEOUT_S,
                                  env={**os.environ, "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise RdptError(f"{what}: Chromium did not finish in {TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RdptError(f"{what}: Chromium exited with {done.returncode} ({tail})")
    return done.stdout


def dump_dom(path: str | Path, fragment: str = "") -> str:
    """The page's serialized DOM once it has loaded (its scripts have run)."""
    return _run(["--dump-dom", page_url(path, fragment)], str(path))


def screenshot(path: str | Path, out: str | Path, fragment: str = "", width: int = 1280, height: int = 1000) -> Path:
    """A ``width`` x ``height`` PNG of the top of the page."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out}", f"--window-size={width},{height}", page_url(path, fragment)], str(path))
    if not out.exists():
        raise RdptError(f"{path}: Chromium wrote no screenshot to {out}")
    return out


@click.command()
@click.argument("page", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--fragment", default="", help="URL fragment, e.g. the viewer's filters 'outcome=incorrect'.")
@click.option("--size", default="1280x1000", show_default=True, help="Window size WIDTHxHEIGHT.")
@stage
def main(page, out, fragment, size):
    """Screenshot PAGE into OUT (PNG) with headless Chromium."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise RdptError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 1280x1000") from None
    click.echo(f"wrote {screenshot(page, out, fragment, width, height)}")


if __name__ == "__main__":
    main()
