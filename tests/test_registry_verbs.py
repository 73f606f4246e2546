"""`postergenre registry list | show | promote | rollback | history` on a folder registry and
on S3 (a real S3-compatible server, moto in server mode, on loopback), through the CLI."""

from __future__ import annotations

import json
import threading

import pytest

from postergenre.cli import main
from postergenre.evaluation.gate import gate
from postergenre.genres import GENRES
from postergenre.serving import registry as reg

CARD = {"genres_per_movie": 2.0, "true_genres_per_movie": 2.0}
BASE = {"null": {"f1_micro": 0.0, "map_macro": 0.12, "hamming_loss": 0.12, **CARD},
        "most_frequent": {"f1_micro": 0.3, "map_macro": 0.12, "hamming_loss": 0.13, **CARD},
        "top3": {"f1_micro": 0.35, "map_macro": 0.12, "hamming_loss": 0.2, **CARD}}
GOOD = {"f1_micro": 0.5, "map_macro": 0.4, "hamming_loss": 0.1, **CARD}
THRESHOLDS = {"global": 0.4, "per_genre": dict.fromkeys(GENRES, 0.3)}


@pytest.fixture(params=["folder", "s3"])
def registry(request, tmp_path) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3")  # the loopback server, its `models` bucket
        # moto's store outlives one server: a prefix of this test's own.
        return f"s3://models/{tmp_path.name}/registry"
    return str(tmp_path / "registry")


def _three_entries(tmp_path, registry: str) -> list[str]:
    """Entries a, b, c of `scratch` registered in that order: their names."""
    (tmp_path / "thresholds.json").write_text(json.dumps({"scratch": THRESHOLDS}))
    (tmp_path / "metrics.json").write_text(json.dumps({"scratch": GOOD, **BASE}))
    gate(tmp_path, tmp_path)
    names = []
    for content in (b"a", b"b", b"c"):
        model = tmp_path / f"model-{content.decode()}"
        model.mkdir()
        (model / "model.keras").write_bytes(content)
        entry = reg.register(tmp_path / "blessing.json", {"scratch": model}, registry, "v1")
        names.append(str(entry).rstrip("/").rsplit("/", 1)[-1])
    return names


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["registry", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tamper(registry: str, entry: str, content: bytes, s3_client=None) -> None:
    if registry.startswith("s3://"):
        key = f"{registry.removeprefix('s3://models/')}/{entry}/model/model.keras"
        s3_client.put_object(Bucket="models", Key=key, Body=content)
    else:
        (reg.Path(registry) / entry / "model" / "model.keras").write_bytes(content)


def test_list_show_promote_rollback_and_history(tmp_path, registry, capsys, request):
    s3_client = request.getfixturevalue("s3") if registry.startswith("s3://") else None
    a, b, c = _three_entries(tmp_path, registry)

    code, out, _ = _cli(capsys, "list", "--registry", registry)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["entry", "registered", "data"]
    assert [line.split()[0] for line in lines[1:]] == [a, b, c]  # oldest first
    assert lines[3].endswith("latest") and "map_macro 0.400" in lines[3]

    code, out, _ = _cli(capsys, "show", "--registry", registry)  # default: latest
    assert code == 0 and out.startswith(f"entry        {c}  (latest)")
    assert "verified     2 files match their sha256" in out
    shown = json.loads(_cli(capsys, "show", a, "--registry", registry, "--json")[1])
    assert (shown["entry"], shown["aliases"], shown["data_version"]) == (a, [], "v1")

    # An alias of its own, then `latest` moved by name of that alias.
    code, out, _ = _cli(capsys, "promote", a, "--alias", "production", "--registry", registry)
    assert (code, out.strip()) == (0, f"production -> {a} (was nothing)")
    assert reg.read_alias(registry, "production")["entry"] == a
    assert _cli(capsys, "promote", "production", "--registry", registry)[0] == 0
    assert reg.read_latest(registry)["entry"] == a
    assert _cli(capsys, "promote", c, "--registry", registry)[0] == 0

    # A bad alias name, or an entry that fails verification: refused, nothing moves.
    code, _, err = _cli(capsys, "promote", a, "--alias", "Prod-1", "--registry", registry)
    assert code == 2 and "'Prod-1' is not an alias name" in err
    _tamper(registry, b, b"swapped", s3_client)
    code, _, err = _cli(capsys, "promote", b, "--alias", "staging", "--registry", registry)
    assert code == 2 and "model/model.keras changed" in err and "refusing" in err
    assert reg.read_alias(registry, "staging") is None
    code, _, err = _cli(capsys, "rollback", "--registry", registry)  # c -> b, b is bad
    assert code == 2 and "model/model.keras changed" in err
    assert reg.read_latest(registry)["entry"] == c

    _tamper(registry, b, b"b", s3_client)  # the registered bytes again
    code, out, _ = _cli(capsys, "rollback", "--registry", registry)
    assert (code, out.strip()) == (0, f"latest -> {b} (was {c})")
    assert _cli(capsys, "rollback", "--registry", registry)[0] == 0
    assert reg.read_latest(registry)["entry"] == a  # each rollback steps back once more
    code, _, err = _cli(capsys, "rollback", "--registry", registry)
    assert code == 2 and f"{a} is the first entry registered" in err
    assert reg.read_latest(registry)["entry"] == a
    # latest.json still agrees with the entry it names (predict reads it).
    assert reg.fetch_latest(registry, tmp_path / "cache").name == a

    history = json.loads(_cli(capsys, "history", "--registry", registry, "--json")[1])
    assert [(h["action"], h["alias"], h["entry"], h["previous"]) for h in history] == [
        ("register", "latest", a, None), ("register", "latest", b, a),
        ("register", "latest", c, b), ("promote", "production", a, None),
        ("promote", "latest", a, c), ("promote", "latest", c, a),
        ("rollback", "latest", b, c), ("rollback", "latest", a, b)]
    assert all(h["at"] and "@" in h["by"] for h in history)
    code, out, _ = _cli(capsys, "history", "--registry", registry)
    assert out.splitlines()[-1].split()[1:5] == ["rollback", "latest", "->", a]

    code, out, _ = _cli(capsys, "list", "--registry", registry)
    aliases = {line.split()[0]: line.rsplit("  ", 1)[-1] for line in out.splitlines()[1:]}
    assert aliases[a] == "latest, production"


def test_an_unknown_name_or_an_empty_registry_is_said_in_one_line(tmp_path, registry,
                                                                   capsys):
    assert _cli(capsys, "list", "--registry", registry)[1].strip() == "(no entry yet)"
    assert _cli(capsys, "history", "--registry", registry)[1].strip() == \
        "(no change recorded yet)"
    code, _, err = _cli(capsys, "rollback", "--registry", registry)
    assert code == 2 and "'latest' points nowhere yet" in err
    code, _, err = _cli(capsys, "show", "staging", "--registry", registry)
    assert code == 2 and "no alias 'staging'" in err
    code, _, err = _cli(capsys, "show", "scratch-0123456789abcdef", "--registry", registry)
    assert code == 2 and "scratch-0123456789abcdef: no such entry" in err


def test_concurrent_changes_lose_no_history_line(tmp_path, registry):
    """Moves of aliases from many threads at once: every one recorded (a folder: under
    its flock; S3: conditional PUTs retried)."""
    a, b, _ = _three_entries(tmp_path, registry)
    errors: list[BaseException] = []

    def promote(alias: str) -> None:
        try:
            for entry in (a, b, a):
                reg.promote(registry, entry, alias)
        except BaseException as err:  # noqa: BLE001 - the test reports it
            errors.append(err)

    threads = [threading.Thread(target=promote, args=(f"alias{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    history = reg.read_history(registry)
    assert len(history) == 3 + 4 * 3
    for i in range(4):
        moves = [(h["entry"], h["previous"]) for h in history if h["alias"] == f"alias{i}"]
        assert moves == [(a, None), (b, a), (a, b)]


def test_export_copies_the_verified_latest_entry_for_dvc_artifacts(tmp_path, registry,
                                                                    request):
    """`register --export DIR` (dvc.yaml's `artifacts:` path): latest's model and
    thresholds, and a record with no time in it; an empty registry gives the record
    only; an entry that fails verification is not exported."""
    out = tmp_path / "blessed"
    assert reg.export_latest(registry, out)["entry"] is None
    assert sorted(p.name for p in out.iterdir()) == [reg.EXPORT_RECORD]

    a, b, c = _three_entries(tmp_path, registry)
    record = reg.export_latest(registry, out)
    assert (record["entry"], record["model"], record["data_version"]) == (c, "scratch", "v1")
    assert sorted(p.name for p in out.iterdir()) == [reg.EXPORT_RECORD, "model",
                                                     "thresholds.json"]
    assert (out / "model" / "model.keras").read_bytes() == b"c"
    assert json.loads((out / "thresholds.json").read_text()) == THRESHOLDS
    first = (out / reg.EXPORT_RECORD).read_bytes()
    reg.export_latest(registry, out)
    assert (out / reg.EXPORT_RECORD).read_bytes() == first  # the same bytes again

    s3_client = request.getfixturevalue("s3") if registry.startswith("s3://") else None
    _tamper(registry, c, b"swapped", s3_client)
    with pytest.raises(reg.RegistryIntegrityError, match="model/model.keras changed"):
        reg.export_latest(registry, out)
    assert (out / "model" / "model.keras").read_bytes() == b"c"  # the previous export
