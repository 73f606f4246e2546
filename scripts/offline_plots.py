#!/usr/bin/env python3
"""`dvc plots show` as a page that draws with no network: Vega inlined, not from a CDN.

DVC's HTML loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so every plot is
blank offline (a cluster without egress, a laptop on a plane). This script fetches the
very versions DVC's renderer names from the npm registry once (`npm pack`, into a cache
folder), writes an HTML template with the three scripts inlined (DVC's `--html-template`,
without its `{scripts}` placeholder, so no CDN tag is added), and runs `dvc plots show`
(or `dvc plots diff REV...`) with it. Plots are drawn as SVG, which a page saved as text
keeps and a headless browser can check.

    scripts/offline_plots.py [--out reports/plots-html] [--diff REV ...]   (make plots)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "vega"
# package -> the file of its npm tarball that is a standalone browser bundle
BUNDLES = {"vega": "package/build/vega.min.js", "vega-lite": "package/build/vega-lite.min.js",
           "vega-embed": "package/build/vega-embed.min.js"}
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


def dvc_vega_versions() -> dict[str, str]:
    """The versions DVC's own page would load (dvc-render's VegaRenderer)."""
    from dvc_render.vega import VegaRenderer

    found = dict(re.findall(r"npm/(vega(?:-lite|-embed)?)@([\d.]+)", VegaRenderer.SCRIPTS))
    missing = set(BUNDLES) - set(found)
    if missing:
        raise RuntimeError(f"dvc-render names no version for {sorted(missing)}")
    return found


def fetch_bundles(cache: Path = CACHE) -> dict[str, Path]:
    """Each package's browser bundle, from the npm registry once, then from `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for package, version in dvc_vega_versions().items():
        target = cache / f"{package}-{version}.min.js"
        if not target.is_file():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed once to fetch Vega (apt-get install npm)")
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([npm, "pack", "--silent", f"{package}@{version}"], cwd=tmp,
                               check=True, stdout=subprocess.DEVNULL)
                (tarball,) = Path(tmp).glob("*.tgz")
                with tarfile.open(tarball) as archive:
                    member = archive.extractfile(BUNDLES[package])
                    if member is None:
                        raise RuntimeError(f"{tarball.name} has no {BUNDLES[package]}")
                    partial = target.with_suffix(".part")
                    partial.write_bytes(member.read())
                    partial.replace(target)
        paths[package] = target
    return paths


def write_template(path: Path, cache: Path = CACHE) -> Path:
    """The HTML template with the three bundles inlined (in load order)."""
    bundles = fetch_bundles(cache)
    scripts = "\n".join(f"<script>\n{bundles[p].read_text(encoding='utf-8')}\n</script>"
                        for p in ("vega", "vega-lite", "vega-embed"))
    # `{refresh_tag}` and `{plot_divs}` are DVC's placeholders; `{scripts}` is left out
    # on purpose (it would add the CDN tags back).
    # The bundles go in last: their own braces must stay as they are.
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
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help=f"where the Vega bundles are kept (default: {CACHE})")
    args = parser.parse_args(argv)
    template = write_template(args.cache / "offline-template.html", args.cache)
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    command = [dvc, "plots", "diff", *args.diff] if args.diff is not None \
        else [dvc, "plots", "show"]
    subprocess.run([*command, "--html-template", str(template), "--out", args.out],
                   check=True)
    print(f"plots (offline, Vega inlined): {Path(args.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
