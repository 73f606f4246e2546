"""`postergenre registry list | show | promote | rollback | history`: the registry's verbs,
as MLflow's and GTO's users know them (`serving.registry` does the work; a folder or an
`s3://` registry alike).

- `list`: every entry, oldest first, with its aliases and headline metrics;
- `show [NAME]`: one entry (an entry's name or an alias; default `latest`), verified;
- `promote NAME [--alias ALIAS]`: point an alias (default `latest`) at an entry, once it
  verifies;
- `rollback [--alias ALIAS]`: point it at the entry registered before the one it names;
- `history`: every recorded move of an alias (`history.jsonl`).

No TensorFlow: each verb reads JSON and hashes files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_REGISTRY = "registry"
# Shown per entry in `list` and `show`: the metrics the gate compares.
SHOWN_METRICS = ("f1_micro", "map_macro")


def add_registry_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """The `registry` subcommand and its verbs, on cli.py's subparsers."""
    p = sub.add_parser("registry", help="list, show, promote or roll back registered models",
                       description=__doc__.split("\n\n")[0], parents=list(parents))
    verbs = p.add_subparsers(dest="registry_command", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help_text, description=help_text,
                             parents=list(parents))
        v.add_argument("--registry", default=DEFAULT_REGISTRY,
                       help=f"registry folder or s3://bucket/prefix (default: "
                       f"{DEFAULT_REGISTRY})")
        v.add_argument("--json", action="store_true", help="print JSON instead of text")
        return v

    verb("list", "every entry, oldest first: model, when, data, metrics, aliases")
    v = verb("show", "one entry, verified (every file against its sha256)")
    v.add_argument("name", nargs="?", default="latest",
                   help="an entry (<model>-<hash>) or an alias (default: latest)")
    v = verb("promote", "point an alias at an entry, once the entry verifies; recorded")
    v.add_argument("name", help="the entry (<model>-<hash>), or an alias naming it")
    v.add_argument("--alias", default="latest",
                   help="the alias to move (default: latest, what predict serves)")
    v = verb("rollback", "point an alias at the entry registered before the one it "
             "names; recorded")
    v.add_argument("--alias", default="latest", help="the alias to move (default: latest)")
    verb("history", "every recorded move of an alias, oldest first")


def _metrics(info: Mapping[str, Any]) -> str:
    metrics = (info.get("blessing") or {}).get("metrics") or {}
    return "  ".join(f"{m} {metrics[m]:.3f}" if isinstance(metrics.get(m), (int, float))
                     else f"{m} n/a" for m in SHOWN_METRICS)


def _data(info: Mapping[str, Any]) -> str:
    version = str(info.get("data_version") or "unknown")
    return f"{info.get('data_source') or 'unknown'} {version[:12]}"


def _list_lines(entries: list[dict]) -> list[str]:
    if not entries:
        return ["(no entry yet)"]
    rows = [("entry", "registered", "data", "metrics", "aliases")]
    rows += [(e["entry"], str(e.get("registered_at") or "?"), _data(e), _metrics(e),
              ", ".join(e["aliases"])) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True))
             + "  " + r[4]).rstrip() for r in rows]


def _show_lines(info: Mapping[str, Any]) -> list[str]:
    lineage = info.get("lineage") or {}
    blessing = info.get("blessing") or {}
    return [
        f"entry        {info['entry']}  ({', '.join(info['aliases']) or 'no alias'})",
        f"model        {info.get('model')}",
        f"uri          {info['uri']}",
        f"registered   {info.get('registered_at')}",
        f"data         {info.get('data_source') or 'unknown'} "
        f"({'synthetic demo posters' if info.get('data_source') == 'demo' else 'posters'}),"
        f" version {info.get('data_version') or 'unknown'}",
        f"lineage      commit {lineage.get('git_commit') or 'unknown'}, params "
        f"{lineage.get('params_hash') or 'unknown'}, image {lineage.get('image') or '?'}",
        f"metrics      {_metrics(info)}",
        f"compared to  {blessing.get('compared_with') or 'nothing (first blessing)'}",
        f"verified     {len(info.get('files') or {})} files match their "
        f"{info.get('hash_algorithm', 'sha256')} ({info['path']})",
    ]


def _history_lines(records: list[dict]) -> list[str]:
    if not records:
        return ["(no change recorded yet)"]
    return [f"{r.get('at')}  {r.get('action'):<8} {r.get('alias')} -> {r.get('entry')}"
            f"  (was {r.get('previous') or 'nothing'})  by {r.get('by')}" for r in records]


def _moved(pointer: Mapping[str, Any], alias: str, previous: str | None) -> str:
    return f"{alias} -> {pointer['entry']} (was {previous or 'nothing'})"


def run_registry_command(args: argparse.Namespace) -> int:
    """Dispatch `postergenre registry VERB`; print text, or JSON with --json."""
    from postergenre.serving import registry as reg

    out: Any
    if args.registry_command == "list":
        out = reg.list_entries(args.registry)
        lines = _list_lines(out)
    elif args.registry_command == "show":
        out = reg.show_entry(args.registry, args.name)
        lines = _show_lines(out)
    elif args.registry_command in ("promote", "rollback"):
        before = reg.read_alias(args.registry, args.alias)
        out = (reg.promote(args.registry, args.name, args.alias)
               if args.registry_command == "promote" else
               reg.rollback(args.registry, args.alias))
        lines = [_moved(out, args.alias, before["entry"] if before else None)]
    else:
        out = reg.read_history(args.registry)
        lines = _history_lines(out)
    print(json.dumps(out, indent=2) if args.json else "\n".join(lines))
    return 0
