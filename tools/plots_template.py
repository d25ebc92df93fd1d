"""Write .dvc/plots/offline.html: DVC's plots page template with Vega and Vega-Lite inlined.

`dvc plots show` writes a page that loads vega, vega-lite and vega-embed from a CDN, so on an
offline machine it is blank. This template (set as `plots.html_template` in .dvc/config) carries
the same versions DVC asks for, downloaded once from the npm registry and checked against the
registry's sha512, and leaves DVC's `{scripts}` out, so the page needs no network. vega-embed is
replaced by a ten-line shim (the page only needs its `vegaEmbed(element, spec)` call), which keeps
the page at about 0.75 MB. The file is committed; run this again only to change versions:

    .venv/bin/python tools/plots_template.py
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".dvc" / "plots" / "offline.html"
# (package, version, file in the tarball, npm's dist.integrity): the versions dvc-render's page loads
LIBRARIES = [
    ("vega", "5.20.2", "package/build/vega.min.js",
     "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    ("vega-lite", "5.2.0", "package/build/vega-lite.min.js",
     "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
]  # fmt: skip

# What dvc-render's plot <div>s call: compile the Vega-Lite spec and render it as SVG.
SHIM = """function vegaEmbed(selector, spec) {
  var compiled = String(spec.$schema || "").indexOf("vega-lite") >= 0 ? vegaLite.compile(spec).spec : spec;
  var element = document.querySelector(selector);
  var view = new vega.View(vega.parse(compiled), {renderer: "svg", container: element, hover: true});
  return view.runAsync().catch(function (error) { element.textContent = "plot failed: " + error; });
}"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {credits}: inlined by tools/plots_template.py, so the page renders offline -->
    {libraries}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def fetch(package: str, version: str, member: str, integrity: str) -> str:
    """One file of the package's npm tarball, after checking the tarball against ``integrity``."""
    url = f"https://registry.npmjs.org/{package}/-/{package}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise SystemExit(f"plots_template: {url}: {algorithm} {digest} is not the pinned {expected}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise SystemExit(f"plots_template: {url} has no file {member}")
        return handle.read().decode("utf-8")


def script(source: str) -> str:
    # "</script" inside a string of the library would end the element early
    return "<script>\n" + source.replace("</script", "<\\/script") + "\n</script>"


def page() -> str:
    libraries = [script(fetch(*library)) for library in LIBRARIES] + [script(SHIM)]
    credits = ", ".join(f"{name} {version} (BSD-3-Clause)" for name, version, _, _ in LIBRARIES)
    text = PAGE.replace("{{", "\0").replace("}}", "\1")  # the style block's literal braces
    text = text.replace("{credits}", credits).replace("{libraries}", "\n    ".join(libraries))
    return text.replace("\0", "{").replace("\1", "}")


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    partial = OUT.with_suffix(".part")
    partial.write_text(page())
    partial.replace(OUT)  # whole or not at all
    print(f"plots_template: wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
