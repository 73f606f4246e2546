"""Typed stage settings: declared once, read from `params.yaml`, checked with errors that
name the key.

A stage's settings are one frozen dataclass whose fields are made with `setting(...)`:
the default, a one-line help, and optional bounds or choices. Everything else is derived
from that one declaration: the values `params.yaml` may hold (unknown keys and bad values
are errors naming `section.key`), the CLI's flags and `--help` (with defaults), and the
Kubeflow pipeline's dict parameter (a component validates its dict back into the config).
Nothing here imports more than the standard library and PyYAML.

Why not pydantic 2 (in the lock): it would replace only the coercion and bounds below, not
what the one `setting(...)` declaration also generates (flags, `--help`, the KFP
parameters, the params-file merge), at the cost of a second way to declare a field and of
errors that span several lines instead of one naming `section.key`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import reprlib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")
DEFAULT_PARAMS = "params.yaml"
# What a params file may expand to, in values: a YAML alias bomb (a few lines that stand
# for billions of values) is refused before anything walks it.
MAX_PARAMS_VALUES = 100_000
# Error messages show a value this way: short, however large or deeply nested it is.
_SHOWN = reprlib.Repr()  # keyword arguments from Python 3.12 on
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxlist, _SHOWN.maxtuple = 2, 4, 4, 4
_SHOWN.maxstring = _SHOWN.maxother = 60


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message names `section.key`."""


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            choices: Sequence[Any] | None = None, low_open: bool = False) -> Any:
    """A config field: its default, a one-line help, and optional bounds / choices.

    `low`/`high` are inclusive bounds (`low_open`: the low bound is exclusive). For a
    tuple-of-strings field, `choices` restricts each item.
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open,
            "choices": tuple(choices) if choices is not None else None}
    if isinstance(default, (tuple, dict)):
        frozen = default

        def factory() -> Any:
            return type(frozen)(frozen)
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_kind(hint: Any) -> str:
    """One of int, float, bool, str, strings (tuple[str, ...]), floats_by_name
    (dict[str, float]), or config (a nested config dataclass)."""
    if hint in (int, float, bool, str):
        return hint.__name__
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "strings"
    if origin is dict:
        return "floats_by_name"
    if dataclasses.is_dataclass(hint):
        return "config"
    raise TypeError(f"unsupported setting type {hint!r}")


def _split_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _coerce(kind: str, value: Any, where: str) -> Any:  # noqa: C901 - one branch per kind
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {_SHOWN.repr(value)} is not {expected}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad("true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # KFP passes numbers through JSON: 3.0 is 3
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad("an integer")
    if kind == "float":
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None or not math.isfinite(number):  # NaN passes every bound
            raise bad("a finite number")
        return number
    if kind == "str":
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad("a string")
    if kind == "strings":
        if isinstance(value, str):
            return tuple(_split_items(value))
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise bad("a list of names (or a comma-separated string)")
    if kind == "floats_by_name":
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            pairs: dict[str, Any] = {}
            for item in _split_items(value):
                name, sep, text = item.partition("=")
                if not sep:
                    raise bad("NAME=NUMBER pairs, e.g. 'Drama=0.3,Comedy=0.2'")
                pairs[name.strip()] = text
            return {k: _coerce("float", v, f"{where}.{k}") for k, v in pairs.items()}
        if isinstance(value, Mapping):
            return {str(k): _coerce("float", v, f"{where}.{k}") for k, v in value.items()}
        raise bad("a mapping of NAME: NUMBER")
    raise AssertionError(kind)


def _check_bounds(field: dataclasses.Field, value: Any, where: str) -> None:
    meta = field.metadata
    choices = meta.get("choices")
    items = value if isinstance(value, tuple) else (value,)
    if choices is not None:
        bad = [v for v in items if v not in choices]
        if bad:
            raise ConfigError(f"{where}: {_SHOWN.repr(bad[0])} is not one of "
                              f"{', '.join(map(str, choices))}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        sign = ">" if meta.get("low_open") else ">="
        raise ConfigError(f"{where}: {value!r} must be {sign} {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {value!r} must be <= {high}")


def from_mapping(cls: type[C], values: Mapping[str, Any] | None, section: str) -> C:
    """Build config `cls` from a mapping (a params.yaml section, a KFP dict parameter).

    Missing keys take their defaults; unknown keys and bad values raise ConfigError naming
    `section.key`. Cross-field checks live in the class's `__post_init__` (a ValueError
    there is reported under `section`).
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, got "
                          f"{_SHOWN.repr(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown setting; known: "
                          f"{', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in values.items():
        where = f"{section}.{name}"
        kind = _field_kind(hints[name])
        if kind == "config":
            kwargs[name] = from_mapping(hints[name], value, where)
            continue
        value = _coerce(kind, value, where)
        _check_bounds(fields[name], value, where)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{section}: {err}") from None


def to_mapping(config: Any) -> dict[str, Any]:
    """A config as plain JSON/YAML values (tuples become lists), for params and KFP."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            value = to_mapping(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[field.name] = value
    return out


def describe_fields(cls: type) -> list[tuple[str, str, Any, str]]:
    """(dotted name, kind, default, help) of every leaf setting, nested ones included."""
    rows = []
    hints = _hints(cls)
    defaults = cls()
    for field in dataclasses.fields(cls):
        kind = _field_kind(hints[field.name])
        if kind == "config":
            rows += [(f"{field.name}.{n}", k, d, h) for n, k, d, h in
                     describe_fields(hints[field.name])]
        else:
            rows.append((field.name, kind, getattr(defaults, field.name),
                         field.metadata.get("help", "")))
    return rows


# ---- params files ---------------------------------------------------------------------------

def read_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A params file as a dict; a clear error naming the file if it is not YAML, or if it
    expands to more than MAX_PARAMS_VALUES values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a YAML file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    _check_size(data, path)
    return data


def _check_size(data: Any, path: Path) -> None:
    """Count values as a reader would see them (an alias counts each time it is used),
    stopping at the budget: the walk costs MAX_PARAMS_VALUES steps at most."""
    budget = MAX_PARAMS_VALUES
    todo = [data]
    while todo:
        value = todo.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(f"{path}: expands to more than {MAX_PARAMS_VALUES:,} values "
                              "(YAML aliases?); a params file holds settings, not data")
        if isinstance(value, Mapping):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)


def merge_params(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`: mappings merge key by key, anything else is replaced, and a
    key set to null in the overlay is removed (e.g. a model the overlay does not train)."""
    merged = {key: _deep_copy(value) for key, value in base.items()}
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = _deep_copy(value)
    return merged


def load_params(files: Sequence[str | os.PathLike[str]] | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The params of a run: each file over the one before (`merge_params`; no files:
    params.yaml in the current folder, if there is one), then each `KEY.SUB=VALUE`
    override. The one loader every command uses."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    if not files:
        files = [DEFAULT_PARAMS] if Path(DEFAULT_PARAMS).is_file() else []
    params: dict[str, Any] = {}
    for path in files:
        params = merge_params(params, read_params(path))
    for text in overrides:
        key, value = parse_assignment(text)
        set_dotted(params, key, value)
    return params


def section_of(params: Mapping[str, Any], section: str) -> Any:
    """`params['models']['scratch_cnn']` for section 'models.scratch_cnn' (None if absent)."""
    node: Any = params
    for part in section.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key.sub=value` -> ('key.sub', value parsed as a YAML scalar or list)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """values['a']['b'] = value for key 'a.b', creating the inner mappings."""
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


# ---- the command line ----------------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-").replace(".", "-")


def _dest(name: str) -> str:
    return "cfg__" + name.replace(".", "__")


def field_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """{dotted name: its choices} of every setting of `cls` that has them."""
    found: dict[str, tuple[Any, ...]] = {}
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        if _field_kind(hints[field.name]) == "config":
            found.update({f"{field.name}.{n}": c
                          for n, c in field_choices(hints[field.name]).items()})
        elif field.metadata.get("choices"):
            found[field.name] = field.metadata["choices"]
    return found


def add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One flag per setting of `cls` (nested settings as --outer-inner), with its help and
    default; a flag given on the command line overrides the params file. A setting with
    choices shows them in place of its kind ({a,b,c}; {a,b,c},... for a list)."""
    group = parser.add_argument_group(title)
    choices = field_choices(cls)
    for name, kind, default, help_text in describe_fields(cls):
        shown = (",".join(default) if kind == "strings"
                 else ",".join(f"{k}={v}" for k, v in default.items()) if kind == "floats_by_name"
                 else default)
        text = f"{help_text} (default: {shown!s})" if help_text else f"(default: {shown!s})"
        text = text.replace("%", "%%")
        if kind == "bool":
            group.add_argument(_flag(name), dest=_dest(name), default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction, help=text)
        else:
            metavar = {"int": "N", "float": "X", "str": "TEXT", "strings": "A,B",
                       "floats_by_name": "NAME=X,..."}[kind]
            if name in choices:
                one = "{" + ",".join(map(str, choices[name])) + "}"
                metavar = f"{one},..." if kind == "strings" else one
            group.add_argument(_flag(name), dest=_dest(name), default=argparse.SUPPRESS,
                               metavar=metavar, help=text)


def add_params_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                     set_help: str = "override one setting of this stage's section, e.g. "
                     "--set epochs=3") -> None:
    """--params FILE (repeatable, later files win) and --set KEY=VALUE (repeatable)."""
    parser.add_argument("--params", metavar="FILE", action="append", default=None,
                        help=f"params file; repeat to lay overlays over it, later files win, "
                        f"e.g. --params {DEFAULT_PARAMS} --params params-tiny.yaml (default: "
                        f"{DEFAULT_PARAMS} in the current folder, if there is one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help=f"{set_help} (repeatable; applied after "
                        "the params files, before flags)")


def config_from_args(cls: type[C], section: str, args: argparse.Namespace,
                     params: Mapping[str, Any] | None = None) -> C:
    """The stage's config: defaults < params files' section < --set < flags. `params`:
    the run's params if already loaded (else `load_params(args.params)`); --set keys are
    relative to `section`."""
    if params is None:
        params = load_params(args.params)
    found = section_of(params, section)
    if found is not None and not isinstance(found, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings")
    values = _deep_copy(found) if found is not None else {}
    for text in args.overrides:
        key, value = parse_assignment(text)
        set_dotted(values, key, value)
    for name, *_ in describe_fields(cls):
        dest = _dest(name)
        if hasattr(args, dest):
            set_dotted(values, name, getattr(args, dest))
    return from_mapping(cls, values, section)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


__all__ = ["ConfigError", "DEFAULT_PARAMS", "add_config_flags", "add_params_flags",
           "config_from_args", "describe_fields", "from_mapping", "load_params",
           "merge_params", "parse_assignment", "read_params", "section_of", "set_dotted",
           "setting", "to_mapping"]
