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

from postergenre.evaluation.styles import plot_fields, style_of
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODELS = ["cnn", "transfer"]  # the run's trained models, in params.yaml's order


def _plots_project(tmp_path: Path) -> Path:
    """A DVC project with the repo's `plots:` section and template, and small curves for
    two models and a baseline (the files evaluate writes)."""
    project = tmp_path / "project"
    plots = project / "reports" / "plots"
    plots.mkdir(parents=True)
    roc, pr = [], []
    for name, power in (("cnn", 0.5), ("transfer", 0.3), ("top3", 1.0)):
        for x in range(11):
            roc.append({**plot_fields(name, MODELS), "fpr": x / 10, "tpr": (x / 10) ** power,
                        "threshold": 1 - x / 10})
            pr.append({**plot_fields(name, MODELS), "recall": x / 10,
                       "precision": 1 - (x / 10) ** 2 / 2})
    (plots / "roc.json").write_text(json.dumps(roc))
    (plots / "pr.json").write_text(json.dumps(pr))
    # The models in another order than in the curves' files: colours must not follow it.
    (plots / "history.json").write_text(json.dumps(
        [{**plot_fields(m, MODELS), "epoch": e, "loss": 1 / e, "val_loss": k / e}
         for m, k in (("transfer", 1.0), ("cnn", 1.2)) for e in range(1, 6)]))
    (plots / "genres").mkdir()
    shutil.copy(REPO_ROOT / "docs" / "report-example.png", plots / "genres" / "roc_cnn.png")
    section = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"plots": section}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", project / ".dvc" / "plots",
                    dirs_exist_ok=True)
    return project


@pytest.mark.slow
def test_plots_page_draws_offline(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
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
    assert len(svgs) == 3, dom[:2000]  # ROC, PR, validation loss: one chart each
    for svg, models in zip(svgs, (3, 3, 2), strict=True):
        # One drawn line per model: SVG paths with real coordinates.
        lines = re.findall(r'<path[^>]*aria-roledescription="line mark"[^>]* d="M[\d.]+,'
                           r'[\d.]+L[^>]*>', svg)
        assert len(lines) == models, svg[:1500]
        # Each model in its one colour in every chart, solid; the baseline grey, dashed.
        for line in lines:
            name = re.search(r"model: (\w+)", line).group(1)
            style = style_of(name, MODELS)
            assert f'stroke="{style.colour}"' in line, (name, line)
            dashes = re.search(r'stroke-dasharray="([^"]*)"', line)
            dashed = dashes is not None and dashes.group(1) not in ("", "1,0")
            assert dashed == (style.kind == "baseline"), (name, line)
