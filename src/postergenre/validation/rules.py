"""The `validate` stage's rules: one record per rule, in the order they are reported.

A rule is one or more expectations of the great-expectations suite
(`resources/postergenre_suite.json`, whose `meta.rule` names the rule) plus what the suite
cannot hold: the rule's default policy, whether its offenders are rows or the table, and
how to say what is wrong with an offender. The policy is declared here only:
ValidateConfig's `soft_rules` / `warn_rules` / `hard_rules` (empty by default) move rules
away from it for a run.

Order matters twice: the report lists rules in this order, and a row breaking several soft
rules is rejected for the first of them. The poster rules are ordered cheapest check first,
as the probe runs them, so the first rule a row breaks is its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from postergenre.configs import ValidateConfig
from postergenre.genres import SEPARATOR

Severity = Literal["hard", "soft", "warn"]


class Fields(Protocol):
    """Values by name: a row of the validation frame (a pandas Series) or a dict."""

    def __getitem__(self, name: str, /) -> Any: ...


# One offender in words. A row rule is given the offending row of the validation frame; a
# table rule the failed expectation's finding (its `meta`, `observed` value, `missing`
# columns and the suite parameters).
Explainer = Callable[[Fields], str]


@dataclass(frozen=True)
class Rule:
    """One rule of the suite and everything the stage needs to apply and report it."""

    name: str
    severity: Severity  # the default policy; the config may move the rule to another
    explain: Explainer
    # Table rules judge the whole table: no row can be rejected for them, so for a table
    # rule soft means warn.
    table: bool = False
    # Offenders sharing this column's value are listed once ("lines 3, 9: duplicate ...").
    grouped_by: str | None = None


def _quote_list(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _missing_columns(finding: Fields) -> str:
    missing = finding["missing"]
    return f"missing column(s) {_quote_list(missing)}" if missing else str(finding["observed"])


def _genre_support(finding: Fields) -> str:
    return (f"genre {finding['genre']!r}: {finding['observed']} movie(s), fewer than "
            f"min_genre_support={finding['min_genre_support']}")


def _unknown_genres(row: Fields) -> str:
    names = row["unknown_genres"].split(SEPARATOR)
    return f"unknown {'genre' if len(names) == 1 else 'genres'} {_quote_list(names)}"


def _poster_missing(row: Fields) -> str:
    if not str(row["poster"]).strip():
        return "empty poster path"
    return f"poster file not found: {row['poster']}"


def _poster_problem(row: Fields) -> str:
    """The probe's own explanation (pixel bomb, undecodable, wrong channels)."""
    return f"poster {row['poster']}: {row['problem']}"


RULES: tuple[Rule, ...] = (
    Rule("columns_expected", "hard", _missing_columns, table=True),
    Rule("imdb_id_present", "hard", lambda row: "empty imdb_id"),
    Rule("imdb_id_unique", "hard", lambda row: f"duplicate imdb_id {row['imdb_id']!r}",
         grouped_by="imdb_id"),
    Rule("imdb_id_format", "hard", lambda row: f"malformed imdb_id {row['imdb_id']!r}"),
    Rule("tmdb_id_numeric", "hard",
         lambda row: f"tmdb_id {row['tmdb_id']!r} is not an integer"),
    Rule("movielens_id_numeric", "hard",
         lambda row: f"movielens_id {row['movielens_id']!r} is not an integer"),
    Rule("genres_known", "hard", _unknown_genres),
    Rule("has_genre", "hard", lambda row: "no genre"),
    Rule("genre_support", "hard", _genre_support, table=True),
    Rule("poster_exists", "soft", _poster_missing),
    Rule("poster_file_size", "soft",
         lambda row: f"poster {row['poster']}: {int(row['file_size'])} bytes"),
    Rule("poster_pixels", "soft", _poster_problem),
    Rule("poster_decodes", "soft", _poster_problem),
    Rule("poster_channels", "soft", _poster_problem),
    Rule("poster_min_width", "soft",
         lambda row: f"poster {row['poster']}: {int(row['width'])} px wide"),
    Rule("poster_min_height", "soft",
         lambda row: f"poster {row['poster']}: {int(row['height'])} px high"),
    # Real landscape artwork (about 1% of TMDb posters) is a poster all the same: reported.
    Rule("poster_aspect", "warn",
         lambda row: f"poster {row['poster']}: height/width {row['aspect']:.2f}"),
    Rule("poster_near_duplicate", "warn",
         lambda row: f"poster {row['poster']} is a near-duplicate of {row['duplicate_of']} "
         f"({row['duplicate_detail']})"),
)
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


def resolve_severity(config: ValidateConfig) -> dict[str, Severity]:
    """Each rule's policy: its default, unless the config names it soft, warn or hard.

    Raises:
        ValueError: the config names a rule that does not exist.
    """
    severity: dict[str, Severity] = {rule.name: rule.severity for rule in RULES}
    policies: tuple[tuple[Severity, tuple[str, ...]], ...] = (
        ("soft", config.soft_rules), ("warn", config.warn_rules), ("hard", config.hard_rules))
    for level, names in policies:
        for name in names:
            if name not in severity:
                raise ValueError(f"{level}_rules: unknown rule {name!r}; rules: "
                                 f"{', '.join(severity)}")
            severity[name] = level
    return severity
