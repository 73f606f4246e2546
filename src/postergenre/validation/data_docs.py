"""The validate stage's Data Docs: one HTML page that reads well offline, policies shown.

great-expectations renders the validation result (`ValidationResultsPageRenderer`), but
its page template loads Bootstrap, Font Awesome, jQuery and its logo from CDNs: offline
(the cluster, CI, a laptop on a train) the page is unstyled, its icons are blank and its
buttons are dead. This module keeps gx's rendering of every section and replaces the page
around it (`PAGE_TEMPLATE`): the stylesheet it needs is inlined (`STYLESHEET`, the few
Bootstrap 4 classes gx's sections use, and the status icons as characters), and its two
interactions (collapsible details, "flagged only") are a few lines of inline script. The
page makes no request to any host.

gx knows nothing of the repo's policies: a warn-only rule that flags a row is, to gx, a
failed expectation, and one such rule turns the whole page to "Failed". Here each
flagged expectation says what its policy did (warn: kept, soft: rows rejected, hard: the
stage stopped), warn-only ones with a warning sign instead of a cross, and the overview's
status is the stage's verdict: Failed, Succeeded with warnings, or Succeeded.

The page is a DVC output, hashed into dvc.lock: the same data and settings must give the
same bytes, so the run's clock and random ids stay off it (`_reproducible_meta`).

gx puts the values it shows into the page as they are (its templates do not escape), and
those values are the data's: a `<script>` in a third-party labels.csv would run in the
reader's browser. So every string of what is rendered (each result's observed and
unexpected values, its exception text, the expectation's arguments) is HTML-escaped
first (`_escaped`), once; the page's own markup is ours and gx's.
"""

from __future__ import annotations

import copy
import html
import itertools
import logging
from collections.abc import Mapping
from typing import Any

from postergenre.reproducible import source_date
from postergenre.validation.rules import Severity

log = logging.getLogger(__name__)

PAGE_TEMPLATE_NAME = "postergenre_page.j2"

# What a flagged expectation's policy did, with its icon (Font Awesome classes, which the
# stylesheet draws as characters) and colour.
POLICY_BADGES: dict[str, tuple[str, str, str]] = {
    "warn": ("warning: rows kept (warn only)", "fa-exclamation-triangle", "warning"),
    "soft": ("rows rejected (soft rule)", "fa-times", "danger"),
    "hard": ("failed (hard rule: the stage stops)", "fa-times", "danger"),
}

STYLESHEET = """
*, ::before, ::after { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; font-size: 0.9rem; line-height: 1.5; color: #212529;
  background: #f4f5f7; }
a { color: #0062cc; text-decoration: none; } a:hover { text-decoration: underline; }
h4, h5, h6, .h6 { margin: 0 0 0.5rem; font-weight: 600; line-height: 1.2; }
h4 { font-size: 1.35rem; } h5 { font-size: 1.1rem; } h6, .h6 { font-size: 0.95rem; }
p { margin: 0 0 0.75rem; } .lead { font-size: 1rem; color: #5a6169; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 0.85em; color: #a0266a; }
ul { padding-inline-start: 20px; margin: 0; }
.pg-header { background: #ffffff; padding: 0.8rem 3rem; font-size: 1.05rem;
  border-bottom: 1px solid #dee2e6; }
.pg-header strong { color: #ff6310; }
.container-fluid { width: 100%; padding-left: 15px; padding-right: 15px; }
.row { display: flex; flex-wrap: wrap; margin-left: -15px; margin-right: -15px; }
[class*="col-"] { position: relative; width: 100%; padding-left: 15px; padding-right: 15px; }
.col-12 { flex: 0 0 100%; max-width: 100%; } .col-6 { flex: 0 0 50%; max-width: 50%; }
.d-none { display: none !important; } .d-flex { display: flex !important; }
@media (min-width: 768px) {
  .col-md-2 { flex: 0 0 16.667%; max-width: 16.667%; }
  .col-md-10 { flex: 0 0 83.333%; max-width: 83.333%; }
  .d-md-block { display: block !important; }
}
.justify-content-center { justify-content: center; } .align-items-center { align-items: center; }
.sticky { position: sticky; top: 1rem; z-index: 1; }
.ge-section { clear: both; margin-bottom: 1.5rem; }
.m-0 { margin: 0 !important; } .m-2 { margin: 0.5rem !important; }
.mt-0 { margin-top: 0 !important; } .mt-1 { margin-top: 0.25rem !important; }
.mt-3 { margin-top: 1rem !important; } .mb-0 { margin-bottom: 0 !important; }
.mb-1 { margin-bottom: 0.25rem !important; } .mb-2 { margin-bottom: 0.5rem !important; }
.mb-3 { margin-bottom: 1rem !important; } .mb-4 { margin-bottom: 1.5rem !important; }
.ml-1 { margin-left: 0.25rem !important; } .ml-2 { margin-left: 0.5rem !important; }
.mr-2 { margin-right: 0.5rem !important; }
.p-0 { padding: 0 !important; } .p-1 { padding: 0.25rem !important; }
.p-2 { padding: 0.5rem !important; } .p-3 { padding: 1rem !important; }
.px-0 { padding-left: 0 !important; padding-right: 0 !important; }
.pt-4 { padding-top: 1.5rem !important; } .pb-4 { padding-bottom: 1.5rem !important; }
.pl-5 { padding-left: 3rem !important; } .pr-5 { padding-right: 3rem !important; }
.pb-1 { padding-bottom: 0.25rem !important; }
.alert { position: relative; padding: 0.6rem 1rem; margin-bottom: 0.75rem;
  border: 1px solid transparent; border-radius: 0.3rem; }
.alert-secondary { color: #383d41; background-color: #e2e3e5; border-color: #d6d8db; }
.card { display: flex; flex-direction: column; background: #ffffff;
  border: 1px solid rgba(0, 0, 0, 0.125); border-radius: 0.3rem; }
.card-header { padding: 0.5rem 0.75rem; background: rgba(0, 0, 0, 0.03);
  border-bottom: 1px solid rgba(0, 0, 0, 0.125); }
.card-body { flex: 1 1 auto; padding: 0.75rem; }
.table-responsive { display: block; width: 100%; overflow-x: auto; }
.table { width: 100%; margin-bottom: 0.5rem; border-collapse: collapse; background: #ffffff; }
.table th, .table td { padding: 0.45rem 0.6rem; vertical-align: top;
  border-top: 1px solid #dee2e6; text-align: left; }
.table thead th { border-bottom: 2px solid #dee2e6; background: #f8f9fa; }
.table-sm th, .table-sm td { padding: 0.2rem 0.4rem; }
.table-bordered, .table-bordered th, .table-bordered td { border: 1px solid #dee2e6; }
.show-scrollbars { overflow: auto; } td .show-scrollbars { max-height: 80vh; }
.badge { display: inline-block; padding: 0.2em 0.45em; font-size: 80%; font-weight: 600;
  line-height: 1.2; border-radius: 0.25rem; white-space: normal; }
.badge-primary { color: #ffffff; background-color: #007bff; }
.badge-secondary { color: #ffffff; background-color: #6c757d; }
.badge-warning { color: #212529; background-color: #ffc107; }
.badge-danger { color: #ffffff; background-color: #dc3545; }
.text-success { color: #28a745 !important; } .text-danger { color: #dc3545 !important; }
.text-warning { color: #c69500 !important; }
.nav { display: flex; flex-direction: column; padding-left: 0; margin: 0; list-style: none; }
.nav-link { display: block; padding: 0.2rem 0.5rem; border-radius: 0.25rem; }
.ge-navigation-sidebar-content { overflow-y: auto; }
.btn-group { display: inline-flex; } .btn { display: inline-block; padding: 0.3rem 0.6rem;
  font-size: 0.85rem; border: 1px solid #0062cc; color: #0062cc; background: #ffffff;
  cursor: pointer; white-space: nowrap; } .btn input { display: none; }
.btn-primary.active { color: #ffffff; background: #0062cc; }
.collapse:not(.show) { display: none; }
.fas { font-style: normal; font-weight: 700; }
.fa-check-circle::before { content: "\\2714"; } .fa-times::before { content: "\\2716"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.flagged-only .hide-succeeded-validation-target-child { display: none; }
.flagged-only tr:has(> td.hide-succeeded-validation-target-child) { display: none; }
.flagged-only .ge-section:has(.hide-succeeded-validations-column-section-target-child) {
  display: none; }
"""

# The two interactions gx's page gets from jQuery and Bootstrap, without them.
SCRIPT = """
document.addEventListener("click", function (event) {
  var link = event.target.closest('[data-toggle="collapse"]');
  if (!link) { return; }
  event.preventDefault();
  var body = document.getElementById(link.getAttribute("href").slice(1));
  if (body) { body.classList.toggle("show"); }
});
function showFlagged(only) {
  document.body.classList.toggle("flagged-only", only);
  document.querySelectorAll(".pg-filter .btn").forEach(function (button) {
    button.classList.toggle("active", (button.dataset.only === "true") === only);
  });
}
"""

# Replaces gx's page_action_card.j2 (its filter buttons call jQuery).
ACTION_CARD = """
<div class="card mb-3">
  <div class="card-header p-2"><strong>Actions</strong></div>
  <div class="card-body p-3">
    <p class="card-text col-12 p-0 mb-1">Validation filter:</p>
    <div class="d-flex justify-content-center">
      <div class="btn-group pg-filter">
        <label class="btn btn-primary active" data-only="false"
               onclick="showFlagged(false)">Show all</label>
        <label class="btn btn-primary" data-only="true"
               onclick="showFlagged(true)">Flagged only</label>
      </div>
    </div>
  </div>
</div>
"""

# gx's page.j2 without its CDN links, scripts, remote logo and newsletter footer.
PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <meta name="viewport" content="width=device-width, initial-scale=1.0">
    <title>{{ page_title | default("Data Docs") }}</title>
    <style>{{ stylesheet | safe }}</style>
  </head>
  <body>
    <header class="pg-header"><strong>postergenre</strong> &middot; data validation
      &middot; {{ expectation_suite_name }}</header>
    <div class="container-fluid pt-4 pb-4 pl-5 pr-5">
      <div class="row">
        {% include 'sidebar.j2' %}
        <div class="col-md-10 col-lg-10 col-xs-12 pl-md-4 pr-md-3">
        {% for section in sections %}
          {% set section_loop = loop -%}
          {% include 'section.j2' %}
        {% endfor %}
        </div>
      </div>
    </div>
    <script>{{ script | safe }}</script>
  </body>
</html>
"""


def _status_cell(policy: str) -> Any:
    """A flagged expectation's status: its policy's icon and what the policy did."""
    from great_expectations.render import RenderedStringTemplateContent

    label, icon, colour = POLICY_BADGES[policy]
    return RenderedStringTemplateContent(
        content_block_type="string_template",
        string_template={
            "template": "$icon $policy",
            "params": {"icon": "", "policy": label},
            "styling": {"params": {
                "icon": {"tag": "i", "classes": ["fas", icon, f"text-{colour}"]},
                "policy": {"classes": ["badge", f"badge-{colour}", "ml-1"]}}},
        })


def _recolour(node: Any, old: str, new: str) -> None:
    """Swap a styling class everywhere under a rendered cell (the unexpected-count line
    of a warn-only rule is red in gx's rendering)."""
    if isinstance(node, list):
        for item in node:
            _recolour(item, old, new)
        return
    template = getattr(node, "string_template", None)
    if isinstance(template, dict):
        classes = (template.get("styling") or {}).get("classes") or []
        template.get("styling", {})["classes"] = [new if c == old else c for c in classes]


def _renderer(severity: Mapping[str, Severity], success: bool) -> Any:
    """gx's ValidationResultsPageRenderer, with each rule's policy shown."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.renderer.column_section_renderer import (
        ValidationResultsColumnSectionRenderer,
    )

    def policy_of(evr: Any) -> str | None:
        if evr.success or (evr.exception_info or {}).get("raised_exception"):
            return None  # passed, or gx itself failed to evaluate it (its own warning)
        return severity.get(str((evr.expectation_config.meta or {}).get("rule")), "hard")

    class PolicySections(ValidationResultsColumnSectionRenderer):
        def render(self, validation_results: list, suite_parameters: Any = None) -> Any:
            section = super().render(validation_results, suite_parameters)
            rows = section.content_blocks[-1].table
            if len(rows) != len(validation_results):
                # gx rendered the rows otherwise than one per result: leave its statuses.
                log.warning("data docs: section %s has %d rows for %d results; policies "
                            "not shown", section.section_name, len(rows),
                            len(validation_results))
                return section
            for row, evr in zip(rows, validation_results, strict=True):
                policy = policy_of(evr)
                if policy is not None:
                    row[0] = _status_cell(policy)
                    if policy == "warn":
                        _recolour(row[1:], "text-danger", "text-warning")
            return section

    class PolicyPage(ValidationResultsPageRenderer):
        def __init__(self) -> None:
            super().__init__()
            self._column_section_renderer = PolicySections()

        def _render_validation_header(self, validation_results: Any) -> Any:  # type: ignore[override]
            block = super()._render_validation_header(validation_results)
            flagged = {policy_of(evr) for evr in validation_results.results} - {None}
            if not success:
                status, icon = "Failed", "fa-times text-danger"
            elif flagged:
                status, icon = "Succeeded with warnings", "fa-exclamation-triangle text-warning"
            else:
                status, icon = "Succeeded", "fa-check-circle text-success"
            params = block.subheader.string_template["params"]
            params["success"] = status
            params["html_success_icon"] = f'<i class="fas {icon}" aria-hidden="true"></i>'
            return block

        def _render_validation_statistics(  # type: ignore[override]
                self, validation_results: Any) -> Any:
            block = super()._render_validation_statistics(validation_results)
            policies = [policy_of(evr) for evr in validation_results.results]
            block.table += [["Flagged by warn-only rules (rows kept)", policies.count("warn")],
                            ["Flagged by soft rules (rows rejected)", policies.count("soft")],
                            ["Failed hard rules", policies.count("hard")]]
            return block

    return PolicyPage()


def _reproducible_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """gx's result metadata without what changes from run to run on the same data: the run
    is named by the data's fingerprint, and its time is SOURCE_DATE_EPOCH (the
    reproducible-builds convention; 1970-01-01 when unset) instead of the clock; the load
    time and the random validation id are dropped."""
    from great_expectations.core.run_identifier import RunIdentifier

    when = source_date()
    markers = {k: v for k, v in (meta.get("batch_markers") or {}).items()
               if k != "ge_load_time"}
    fingerprint = str(markers.get("pandas_data_fingerprint", ""))[:12]
    fixed = {k: v for k, v in meta.items() if k != "validation_id"}
    fixed.update(run_id=RunIdentifier(run_name=f"labels {fingerprint}".strip(), run_time=when),
                 validation_time=when, batch_markers=markers)
    return fixed


def _escape_all(value: Any) -> Any:
    """`value` with every string in it (keys included) HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, Mapping):
        return {_escape_all(k): _escape_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_escape_all(v) for v in value)
    return value


def _escaped(evr: Any) -> Any:
    """A copy of a validation result whose shown strings are HTML-escaped (module doc)."""
    shown = copy.deepcopy(evr)
    shown.result = _escape_all(shown.result or {})
    shown.exception_info = _escape_all(shown.exception_info or {})
    config = shown.expectation_config
    if config is not None:
        config.kwargs = _escape_all(dict(config.kwargs))
    return shown


def render_data_docs(result: Any, severity: Mapping[str, Severity], success: bool) -> str:
    """The validation result as one self-contained HTML page.

    `severity` is each rule's policy (validation_rules.resolve_severity), `success` the
    stage's verdict (no hard rule failed, rejects within bounds).
    """
    from great_expectations.render.view import DefaultJinjaPageView
    from jinja2 import ChoiceLoader, DictLoader

    # A shallow copy: the caller's result keeps its own metadata and results.
    shown = copy.copy(result)
    shown.meta = _reproducible_meta(result.meta)
    shown.results = [_escaped(evr) for evr in result.results]
    document = _renderer(severity, success).render(shown)
    view = DefaultJinjaPageView()
    # gx names each collapsible block with a random uuid4; a counter keeps them unique and
    # the page's bytes the same from run to run.
    counter = itertools.count(1)
    view.env.filters["generate_html_element_uuid"] = \
        lambda prefix=None: f"{prefix or ''}{next(counter)}"
    # Our templates first: the page, and the action card whose buttons need no jQuery.
    view.env.loader = ChoiceLoader([
        DictLoader({PAGE_TEMPLATE_NAME: PAGE_TEMPLATE, "page_action_card.j2": ACTION_CARD}),
        view.env.loader])  # type: ignore[list-item]
    return view.render(document, template=PAGE_TEMPLATE_NAME, stylesheet=STYLESHEET,
                       script=SCRIPT)
