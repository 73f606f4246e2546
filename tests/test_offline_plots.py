"""`make plots`: DVC's plots page draws with the network blocked (Vega inlined)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _plots_project(tmp_path: Path) -> Path:
    """A DVC project holding the repo's `plots:` section and small curves for two models."""
    project = tmp_path / "project"
    plots = project / "reports" / "plots"
    for name in ("cnn", "transfer", "top3"):
        points = [{"fpr": x / 10, "tpr": min(1.0, (x / 10) ** 0.5), "threshold": 1 - x / 10}
                  for x in range(11)]
        for kind, rows in (("roc", points),
                           ("pr", [{"recall": p["fpr"], "precision": 1 - p["fpr"] / 2}
                                   for p in points])):
            (plots / kind).mkdir(parents=True, exist_ok=True)
            (plots / kind / f"{name}.json").write_text(json.dumps(rows))
    (plots / "history").mkdir()
    (plots / "history" / "cnn.json").write_text(json.dumps(
        [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 6)]))
    (plots / "genres").mkdir()
    shutil.copy(REPO_ROOT / "docs" / "report-example.png", plots / "genres" / "roc_cnn.png")
    section = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"plots": section}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    return project


@pytest.mark.slow
def test_plots_page_draws_offline(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    if shutil.which("npm") is None:
        pytest.skip("npm not installed: Vega comes from the npm registry")
    project = _plots_project(tmp_path)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "offline_plots.py"),
                           "--out", "plots-html"], cwd=project, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = project / "plots-html" / "index.html"
    text = page.read_text()
    assert "cdn.jsdelivr.net" not in text and "<script src=" not in text
    # Every host unreachable: only the page itself can draw the plots.
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    svgs = re.findall(r"<svg[^>]*class=\"marks\".*?</svg>", dom, flags=re.DOTALL)
    assert len(svgs) >= 3, dom[:2000]  # ROC, PR, validation loss
    for svg in svgs:
        # Drawn lines: SVG paths with real coordinates, one per model in ROC and PR.
        assert re.search(r'<path[^>]* d="M[\d.]+,[\d.]+L', svg)
    assert "cnn" in dom and "transfer" in dom
