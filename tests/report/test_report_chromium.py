"""The report in a real headless Chromium: it loads with no console message, its timeline has
one bar per job attempt, and a screenshot of it shows the timeline's colours."""

from __future__ import annotations

import collections
import os
import re
import shutil
from pathlib import Path

import pytest

from lofarexec.run.journal import read_journal
from lofarexec.run.report import REPORT_NAME
from lofarexec.run.report_html import COLOURS
from tests.helpers import REPO
from tests.report.chromium import WINDOW, console_messages, png_pixels, run_headless, screenshot
from tests.report.runs import run_jobs

pytestmark = pytest.mark.slow
#: Set to write the screenshot to the docs' picture of the report (docs/_static/report.png).
UPDATE_PICTURE = "LOFAREXEC_UPDATE_REPORT_PICTURE"
#: A night's run in small: four hosts of two slots, a slow host, two failures.
SPECS = [(f"node{n % 4 + 1}", 0.15 + (0.25 if n % 4 == 2 else 0.0) + 0.03 * (n % 5),
          3 if n in (6, 13) else 0) for n in range(24)]


@pytest.fixture
def report_page(make_config) -> Path:
    config = make_config(job_name="night")
    run_jobs(config, SPECS, max_per_node=2, recipe="calibrate")
    return Path(config.job_directory) / REPORT_NAME


def test_the_report_loads_without_console_messages_with_a_bar_per_attempt(report_page,
                                                                           tmp_path):
    result = run_headless(report_page, tmp_path / "profile", "--dump-dom")
    assert console_messages(result.stderr) == []
    ran = [e for e in read_journal(report_page.parent) if e.get("start_time") is not None]
    bars = re.findall(r'<rect class="bar"[^>]*data-state="(\w+)"', result.stdout)
    assert len(bars) == len(ran) == len(SPECS)
    assert collections.Counter(bars) == {"succeeded": 22, "failed": 2}
    assert "Failed jobs (2)" in result.stdout


def test_a_screenshot_of_the_report_shows_the_timeline(report_page, tmp_path):
    picture = tmp_path / "report.png"
    assert console_messages(screenshot(report_page, picture, tmp_path / "profile")) == []
    width, height, pixels = png_pixels(picture)
    assert (width, height) == WINDOW
    seen = collections.Counter(pixels)
    assert len(seen) > 50  # text, lines and bars: not a blank page
    for state in ("succeeded", "failed"):
        colour = tuple(int(COLOURS[state][i:i + 2], 16) for i in (1, 3, 5))
        assert seen[colour] > 100, state  # the bars are drawn
    if os.environ.get(UPDATE_PICTURE):
        shutil.copyfile(picture, REPO / "docs" / "_static" / "report.png")
