"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``; ``make test``
installs it with .ci/ensure-chromium.sh). Missing Chromium fails the test, except locally
with GRADPROBE_SKIP_BROWSER=1.

The page's own script checks, once loaded, that every image decoded to a non-zero size and
that no script error was raised, and writes the verdict into ``#gp-status``; ``--dump-dom``
shows the DOM after scripts ran. Console messages go to stderr (``--enable-logging``).
"""

import os
import re
import shutil
import subprocess

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


@pytest.fixture(scope="module")
def chromium():
    names = [os.environ.get("GRADPROBE_CHROMIUM") or "chromium", "chromium-browser"]
    found = next(filter(None, map(shutil.which, names)), None)
    if found is None:
        if os.environ.get("GRADPROBE_SKIP_BROWSER"):
            pytest.skip("GRADPROBE_SKIP_BROWSER is set and Chromium is not installed")
        pytest.fail(
            "headless Chromium is needed for the report's browser test and was not found: run "
            ".ci/ensure-chromium.sh (make test does), `apt-get install chromium`, point "
            "GRADPROBE_CHROMIUM at a Chrome binary, or set GRADPROBE_SKIP_BROWSER=1 locally"
        )
    return found


def _browse(chromium, page, tmp_path, *extra) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _status(dom: str) -> str:
    """The status line's text; the element is hidden (a reader never sees it) and carries
    the verdict in ``data-status`` too."""
    match = re.search(r'<div id="gp-status"([^>]*)>([^<]*)<', dom)
    assert match, "no #gp-status in the DOM"
    attributes, text = match.groups()
    assert re.search(r"\bhidden\b", attributes), attributes
    assert f'data-status="{text.split()[0]}"' in attributes, attributes
    return text


def test_report_renders_cleanly_in_chromium(chromium, evil_report, tmp_path):
    done = _browse(chromium, evil_report, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    images = evil_report.read_text().count("<img ")
    assert images >= 4
    status = _status(dom)
    assert status.startswith("report-ok"), status  # every image decoded, no script error
    assert f"images={images} " in status
    assert _console(done.stderr) == []
    assert 'id="findings"' in dom and 'id="layer-table"' in dom
    assert len(re.findall(r"<script\b", dom)) == 2  # the layer named <script> is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_screenshot_is_not_blank(chromium, evil_report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    done = _browse(
        chromium, evil_report, tmp_path, "--window-size=1200,1800", f"--screenshot={shot}"
    )
    assert shot.is_file(), done.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1800, 1200)
    ink = (pixels < 0.9).any(axis=-1).mean()  # share of pixels that are not near white
    assert pixels.std() > 0.05 and ink > 0.02, (pixels.std(), ink)


def test_the_check_catches_a_broken_page(chromium, evil_report, tmp_path):
    """The status line is not vacuous: a page with a script error and a broken image fails."""
    broken = tmp_path / "broken.html"
    text = evil_report.read_text()
    text = text.replace(
        "</body>",
        '<img alt="x" src="data:image/png;base64,AAAA"><script>undefinedFunction()</script></body>',
    )
    broken.write_text(text)
    done = _browse(chromium, broken, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    status = _status(done.stdout)
    assert status.startswith("report-bad") and "undefinedFunction" in status, status
    assert '"x"' in status  # the undecodable image is named
    assert any("undefinedFunction" in line for line in _console(done.stderr))
