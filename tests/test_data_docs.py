"""validate's Data Docs: styled with the network blocked, each flagged rule by its policy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from postergenre.configs import ValidateConfig
from postergenre.validation.validate import DataValidationError, validate_dataset
from tests.helpers import jpeg_bytes, label_row, make_dataset, poster_art, validate_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Run in the page once it has loaded: what was fetched, how things are styled, and what
# the "flagged only" filter hides. The result is written into the DOM for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", function () {
  function style(selector, pseudo) {
    var element = document.querySelector(selector);
    return element ? getComputedStyle(element, pseudo || null) : null;
  }
  function section(name) {
    return Array.from(document.querySelectorAll(".ge-section")).find(function (s) {
      var title = s.querySelector(".alert h5");
      return title && title.textContent.trim() === name;
    });
  }
  var aspect = section("aspect");
  var warning = aspect.querySelector("i.fas");
  var out = {
    resources: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
    font: style("body").fontFamily,
    header_background: style(".alert-secondary").backgroundColor,
    cell_padding: style("td").paddingLeft,
    aspect_icon: warning.className,
    aspect_icon_glyph: getComputedStyle(warning, "::before").content,
    aspect_icon_colour: getComputedStyle(warning).color,
    aspect_status: aspect.querySelector("td").textContent.trim(),
    overview: document.querySelector("#section-1").textContent.replace(/\\s+/g, " "),
  };
  showFlagged(true);
  out.flagged_only = {aspect: aspect.offsetParent !== null,
                      channels: section("channels").offsetParent !== null};
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _landscape_dataset(root: Path) -> Path:
    """20 posters, one of them landscape artwork: poster_aspect flags it (warn only)."""
    data = make_dataset(root, [label_row(n) for n in range(1, 21)])
    (data / "posters" / "tt0000003.jpg").write_bytes(jpeg_bytes(poster_art(3, 48, 96)))
    return data


def _external_references(html: str) -> list[str]:
    """What the page would fetch from a host: stylesheets, scripts, images, CSS urls."""
    tags = re.findall(r"<(?:link|script|img|iframe|source)\b[^>]*?(?:href|src)\s*=\s*"
                      r"[\"']?((?:https?:)?//[^\"' >]+)", html, flags=re.IGNORECASE)
    return tags + re.findall(r"url\(\s*[\"']?((?:https?:)?//[^\"')]+)", html)


def test_a_warn_only_rule_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = validate_dataset(_landscape_dataset(tmp_path), out,
                               ValidateConfig(min_genre_support=0))
    assert summary["success"]
    html = (out / "data_docs.html").read_text()
    assert _external_references(html) == []
    text = re.sub(r"<[^>]+>|\s+", " ", html)
    assert re.search(r"Status: +Succeeded with warnings", text)
    assert "warning: rows kept (warn only)" in text
    assert re.search(r"Flagged by warn-only rules \(rows kept\) +1 ", text)
    assert re.search(r"Failed hard rules +0 ", text)


def test_a_failed_hard_rule_fails_the_page(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(n) for n in range(1, 6)],
                         skip_posters=("posters/tt0000002.jpg",))
    with pytest.raises(DataValidationError):
        validate_dataset(data, tmp_path / "out", validate_config(hard=("poster_exists",)))
    text = re.sub(r"<[^>]+>|\s+", " ", (tmp_path / "out" / "data_docs.html").read_text())
    assert re.search(r"Status: +Failed", text)
    assert "failed (hard rule: the stage stops)" in text
    assert re.search(r"Failed hard rules +1 ", text)


def test_a_clean_table_succeeds(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, [label_row(n) for n in range(1, 6)])
    validate_dataset(data, tmp_path / "out", validate_config())
    text = re.sub(r"<[^>]+>|\s+", " ", (tmp_path / "out" / "data_docs.html").read_text())
    assert re.search(r"Status: +Succeeded ", text) and "warn only" not in text


def test_the_page_is_the_same_bytes_on_every_run_of_the_same_data(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """DVC hashes the page into dvc.lock: a rerun on the same data must not change it."""
    data = _landscape_dataset(tmp_path)
    pages = []
    for run in ("a", "b"):
        validate_dataset(data, tmp_path / run, ValidateConfig(min_genre_support=0))
        pages.append((tmp_path / run / "data_docs.html").read_bytes())
    assert pages[0] == pages[1]
    assert b"1970-01-01T00:00:00" in pages[0]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764633600")  # 2025-12-02
    validate_dataset(data, tmp_path / "c", ValidateConfig(min_genre_support=0))
    assert b"2025-12-02T00:00:00" in (tmp_path / "c" / "data_docs.html").read_bytes()


@pytest.mark.slow
def test_data_docs_render_styled_with_the_network_blocked(tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    out = tmp_path / "out"
    validate_dataset(_landscape_dataset(tmp_path), out, ValidateConfig(min_genre_support=0))
    html = (out / "data_docs.html").read_text()
    page = tmp_path / "probed.html"
    end = html.rindex("</body>")
    page.write_text(html[:end] + PROBE + html[end:])
    # Every host unreachable: only what the page holds can style it.
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
         "--window-size=1400,1000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.DOTALL)
    assert found, dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["resources"] == []  # nothing was even asked of a host
    # Styled: not the browser's defaults (Times, transparent headers, 1px cells).
    assert "Times" not in probe["font"] and "system-ui" in probe["font"]
    assert probe["header_background"] not in ("rgba(0, 0, 0, 0)", "transparent")
    assert float(probe["cell_padding"].removesuffix("px")) > 4
    # The warn-only rule: a warning sign in the warning colour, not a red cross.
    assert "fa-exclamation-triangle" in probe["aspect_icon"]
    assert probe["aspect_icon_glyph"] == '"\u26a0"'
    assert probe["aspect_icon_colour"] != "rgb(220, 53, 69)"
    assert "warning: rows kept (warn only)" in probe["aspect_status"]
    assert "Status: Succeeded with warnings" in probe["overview"]
    # "Flagged only" keeps the warned rule and hides the sections that passed.
    assert probe["flagged_only"] == {"aspect": True, "channels": False}


def test_values_from_the_data_are_escaped_on_the_page(tmp_path: Path) -> None:
    """Issue 24: a third-party labels.csv is validated as it is (`make real`); what a rule
    flags must show on the page as text, never run as markup."""
    rows = [label_row(n) for n in range(1, 21)]
    rows[3]["tmdb_id"] = "<script>alert(1)</script>"
    rows[4]["imdb_id"] = '"><img src=x onerror=alert(2)>'
    rows[5]["genres"] = "Drama|<b>Bold</b> & co"
    data = make_dataset(tmp_path, rows)
    with pytest.raises(DataValidationError):  # malformed ids are hard rules
        validate_dataset(data, tmp_path / "out", validate_config())
    html = (tmp_path / "out" / "data_docs.html").read_text()
    for hostile in ("<script>alert", "<img src=x", "<b>Bold"):
        assert hostile not in html
    for shown in ("&lt;script&gt;alert(1)&lt;/script&gt;",
                  "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;",
                  "&lt;b&gt;Bold&lt;/b&gt; &amp; co"):
        assert html.count(shown) >= 1, shown  # the value shown as text, escaped once
    assert "&amp;lt;" not in html
