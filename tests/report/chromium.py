"""Headless Chromium (Debian's ``chromium``) for the report tests: the DOM after load, the
console messages, and a screenshot; and a small PNG reader to look at the screenshot."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

#: A console message in Chromium's log (``--enable-logging=stderr``): any level.
CONSOLE = re.compile(r":CONSOLE[:(]")
WINDOW = (1280, 900)


def chromium() -> str:
    """The browser's path; skipped with the reason when missing, a failure under CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "Debian's chromium is not installed (apt-get install chromium; scripts/test does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_headless(page: Path, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Load ``page`` in a fresh headless browser; all of its processes are gone on return."""
    command = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", *arguments,
               page.resolve().as_uri()]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        try:  # its renderer and helper processes share its session
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, err[-2000:]
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def screenshot(page: Path, picture: Path, profile: Path) -> str:
    """Write a PNG of the page as a browser window shows it; returns Chromium's log."""
    return run_headless(page, profile, f"--screenshot={picture}").stderr


def png_pixels(path: Path) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and the RGB(A) pixels of an 8-bit truecolour PNG (Chromium's kind)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), \
            data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    channels = 3 if colour == 2 else 4
    raw, stride, previous = zlib.decompress(idat), width * channels, bytearray(width * channels)
    pixels: list[tuple[int, ...]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                           (abs(guess - corner), 2, corner))
                line[i] = (line[i] + near[2]) & 255
        pixels += [tuple(line[i:i + 3]) for i in range(0, stride, channels)]
        previous = line
    return width, height, pixels
