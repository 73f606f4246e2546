#!/usr/bin/env python3
"""`dvc plots show` as a page that draws with no network: Vega inlined, not from a CDN.

DVC's HTML loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so every plot is
blank offline (a cluster without egress, a laptop on a plane). This script writes an HTML
template with one script inlined that holds all three, from the PyPI wheel
vl-convert-python (locked, installed by `make install`; no npm, no download), and runs
`dvc plots show` (or `dvc plots diff REV...`) with it (DVC's `--html-template`, without its
`{scripts}` placeholder, so no CDN tag is added). Plots are drawn as SVG, which a page
saved as text keeps and a headless browser can check.

    scripts/offline_plots.py [--out reports/plots-html] [--diff REV ...]   (make plots)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  {refresh_tag}
  <title>postergenre: DVC plots (offline)</title>
  <style>body {{ font-family: sans-serif; }} table {{ border-spacing: 15px; }}</style>
  {bundles}
  <script>
    // SVG, not canvas: the drawn marks are part of the page (and testable).
    const vegaEmbedCanvas = vegaEmbed;
    vegaEmbed = (el, spec, options) =>
      vegaEmbedCanvas(el, spec, Object.assign({{renderer: "svg", actions: false}}, options));
  </script>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def vega_lite_version() -> str:
    """The newest Vega-Lite that vl-convert bundles with the major version DVC's own page
    loads (dvc-render's VegaRenderer), whose specs DVC writes."""
    import vl_convert
    from dvc_render.vega import VegaRenderer

    found = re.search(r"npm/vega-lite@(\d+)\.", VegaRenderer.SCRIPTS)
    if found is None:
        raise RuntimeError("dvc-render names no vega-lite version")
    same_major = [v for v in vl_convert.get_vegalite_versions()
                  if v.split(".")[0] == found.group(1)]
    if not same_major:
        raise RuntimeError(f"vl-convert bundles no Vega-Lite {found.group(1)}.x")
    return max(same_major, key=lambda v: tuple(map(int, v.split("."))))


def write_template(path: Path) -> Path:
    """The HTML template with Vega, Vega-Lite and Vega-Embed inlined in one script."""
    import vl_convert

    # The bundle sets window.vega, window.vegaLite and window.vegaEmbed; its own top-level
    # names stay inside a function, clear of the page's scripts.
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version())
    scripts = f"<script>\n(function () {{\n{bundle}\n}})();\n</script>"
    # `{refresh_tag}` and `{plot_divs}` are DVC's placeholders; `{scripts}` is left out
    # on purpose (it would add the CDN tags back).
    # The bundle goes in last: its own braces must stay as they are.
    page = TEMPLATE.replace("{{", "{").replace("}}", "}").replace("{bundles}", scripts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/plots-html",
                        help="folder for index.html (default: reports/plots-html)")
    parser.add_argument("--diff", nargs="*", metavar="REV", default=None,
                        help="`dvc plots diff REV ...` instead of `dvc plots show`")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        template = write_template(Path(tmp) / "offline-template.html")
        _show(args, template)
    print(f"plots (offline, Vega inlined): {Path(args.out) / 'index.html'}")
    return 0


def _show(args: argparse.Namespace, template: Path) -> None:
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    command = [dvc, "plots", "diff", *args.diff] if args.diff is not None \
        else [dvc, "plots", "show"]
    subprocess.run([*command, "--html-template", str(template), "--out", args.out],
                   check=True)


if __name__ == "__main__":
    sys.exit(main())
