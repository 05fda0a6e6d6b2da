"""The report page in a real browser: headless Chromium renders it, its images decode,
and the screenshot is not blank. Skips where no Chromium is installed (Debian: ``apt-get
install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stdp_bench.cli import app

from test_report import GRID

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium; "
                             ".ci/run installs it)")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    (tmp / "g.toml").write_text(GRID)
    res = CliRunner().invoke(app, ["run", str(tmp / "g.toml"), "--out", str(tmp / "r"),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["report", str(tmp / "r"), "--out", str(tmp / "p.html")])
    assert res.exit_code == 0, res.output
    return tmp / "p.html"


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={cwd / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_every_image_of_the_page_decodes_in_chromium(page):
    dom = _chromium("--dump-dom", page.as_uri(), cwd=page.parent)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert images >= 6 and 'data-broken="0"' in body, body
    assert dom.stdout.count('<details class="cell"') == 4


def test_the_screenshot_shows_tables_and_figures(page):
    shot = page.parent / "shot.png"
    res = _chromium("--window-size=1400,2000", f"--screenshot={shot}", page.as_uri(),
                    cwd=page.parent)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1400)
    # Not a blank page: text, table borders and figures darken a good part of it.
    assert (pixels < 200).mean() > 0.03 and pixels.std() > 20
