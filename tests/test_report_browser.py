"""The report in a real browser: headless Chromium renders it from disk, we read back the DOM and
keep screenshots in reports/ (screenshot.png at 1400 px, screenshot-narrow.png at 760 px and
screenshot-evidence.png, one claim's evidence; CI artifacts, shown in reports/README.md).

Without chromium the test skips, except under CI (CI=true), where a missing browser is a failure:
scripts/install-chromium.sh installs it.
"""

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from verify import report
from verify.store import read_export

FIXTURES = Path(__file__).parent / "fixtures"
SCREENSHOT = Path(__file__).resolve().parent.parent / "reports" / "screenshot.png"
WINDOW = (1400, 2000)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        message = "chromium is not installed (scripts/install-chromium.sh installs Debian's package)"
        if running_in_ci():
            pytest.fail(f"CI is set but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    cpu, cuda = read_export(FIXTURES / "results-cpu.json"), read_export(FIXTURES / "results-cuda.json")
    return report.write_report([*cpu["verdicts"], *cuda["verdicts"]], [*cpu["runs"], *cuda["runs"]],
                               tmp_path_factory.mktemp("report") / "index.html")


def run_chromium(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    # A fresh profile per call: a shared one is locked by the previous (possibly lingering) process.
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_dom_holds_the_verdict_table(chromium, report_file, tmp_path):
    completed = run_chromium(chromium, tmp_path / "profile", "--dump-dom", report_file.as_uri())
    dom = completed.stdout
    assert completed.returncode == 0 and dom, completed.stderr[-2000:]
    table = dom[dom.index('<table id="claim-table">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="entry (claim|finding)[^"]*" id="row-([^"]+)"', table)
    assert len(rows) == 10 and ("claim", "dtgma-split-mnist-ewc-forgetting") in rows
    assert "measured on CPU" in table and "measured on CUDA" in table
    assert table.count("CPU ≠ CUDA") == 2
    assert dom.count('<svg class="dot-plot"') >= 5 and '<table class="heatmap">' in dom


# (file, window, claim): the top of the page at a desktop and at a narrow width, and one claim's
# evidence (dot plot, per-seed table, accuracy-matrix heatmaps). Headless Chromium does not scroll to
# a #fragment before its screenshot, so the evidence shot renders a copy of the same report whose
# only change is a style rule hiding everything but that claim's article.
SCREENSHOTS = [
    ("screenshot.png", WINDOW, None),
    ("screenshot-narrow.png", (760, 1600), None),
    ("screenshot-evidence.png", (1400, 1200), "dtgma-split-mnist-ewc-accuracy"),
]


@pytest.mark.parametrize("name, window, claim", SCREENSHOTS, ids=[name for name, _, _ in SCREENSHOTS])
def test_screenshot(chromium, report_file, tmp_path, name, window, claim):
    page = report_file
    if claim is not None:
        html = report_file.read_text(encoding="utf-8")
        assert f'id="claim-{claim}"' in html
        focus = f"<style>.page > :not(#details), #details > :not(#claim-{claim}) {{ display: none; }}</style></head>"
        page = tmp_path / "focus.html"
        page.write_text(html.replace("</head>", focus, 1), encoding="utf-8")
    path = SCREENSHOT.parent / name
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    completed = run_chromium(chromium, tmp_path / "profile", f"--screenshot={path}",
                             f"--window-size={window[0]},{window[1]}", "--hide-scrollbars", page.as_uri())
    assert completed.returncode == 0 and path.is_file(), completed.stderr[-2000:]
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == window
