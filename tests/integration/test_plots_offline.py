"""`dvc plots show` with the project's template (.dvc/plots/offline.html, Vega and Vega-Lite
inlined) writes a page that renders with no network: checked in a real browser (headless
Chromium, every host name unresolvable), which must draw one bar per row of the plot file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / ".dvc" / "plots" / "offline.html"
REQUIRE_ENV = "ASYMSR_REQUIRE_BROWSER"


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but no Chromium is installed")
    pytest.skip("needs a headless Chromium (apt-get install chromium) to render the page")


def rendered_dom(page: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with every network request failing."""
    command = [
        browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",  # offline: no CDN can answer
        "--virtual-time-budget=15000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_template_is_self_contained_and_small():
    text = TEMPLATE.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text  # DVC's CDN <script> tags have nowhere to go
    assert not re.search(r"<script[^>]+src=", text), "a script is loaded from elsewhere"
    assert 'var e="5.20.2"' in text  # the Vega that dvc-render's page asks for
    assert TEMPLATE.stat().st_size < 1_000_000
    config = (REPO / ".dvc" / "config").read_text()
    assert re.search(r"\[plots\]\s+html_template = plots/offline\.html", config)


@pytest.mark.slow
def test_dvc_plots_page_renders_offline_in_a_real_browser(tmp_path: Path) -> None:
    browser()  # skip before any work where there is none
    project = tmp_path / "project"
    project.mkdir()
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=project, check=True)
    (project / ".dvc" / "plots").mkdir()
    shutil.copy(TEMPLATE, project / ".dvc" / "plots" / "offline.html")
    with (project / ".dvc" / "config").open("a") as config:  # as the project's .dvc/config sets it
        config.write("[plots]\n    html_template = plots/offline.html\n")
    rows = [{"case": f"model {i}", "psnr_gain_db": 0.1 * (i + 1)} for i in range(5)]
    (project / "gains.json").write_text(json.dumps(rows))
    (project / "dvc.yaml").write_text(
        "plots:\n  - gains.json:\n      template: bar_horizontal\n      x: psnr_gain_db\n      y: case\n"
    )
    shown = subprocess.run([dvc, "plots", "show", "-o", "page"], cwd=project, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    page = project / "page" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html and "vegaEmbed(" in html
    assert page.stat().st_size < 1_000_000

    dom = rendered_dom(page, tmp_path)
    failure = re.search(r">\s*plot failed: [^<]+", dom)  # what the template's vegaEmbed writes when Vega throws
    assert not failure, failure.group(0)
    svg = re.search(r"<svg.*?</svg>", dom, re.S)
    assert svg, "no chart was drawn"
    bars = re.findall(r'<path[^>]*aria-roledescription="bar"', svg.group(0))
    assert len(bars) == len(rows), f"{len(bars)} bars drawn for {len(rows)} rows"
    assert all(row["case"] in svg.group(0) for row in rows)  # the axis labels
