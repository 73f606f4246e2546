"""Every setting declared once: the typed configs, params.yaml and params-study.yaml."""

import dataclasses

import pytest

from postergenre.configs import (
    MODEL_KINDS,
    STAGE_CONFIGS,
    AugmentConfig,
    GateConfig,
    IngestConfig,
    SplitConfig,
    experiment_from_params,
    load_experiment,
    model_spec,
)
from postergenre.typed_config import (
    ConfigError,
    describe_fields,
    from_mapping,
    read_params,
    to_mapping,
)
from tests.conftest import DEMO_MODELS, REPO_ROOT

OVERLAYS = ("params-study.yaml", "params-real.yaml", "params-tiny.yaml")


def _leaf_items(value, prefix=""):
    if isinstance(value, dict) and value:
        return {k for key, inner in value.items() for k in _leaf_items(inner, f"{prefix}{key}.")}
    return {(prefix.rstrip("."), repr(value))}


@pytest.mark.parametrize("overlays", [(), *((o,) for o in OVERLAYS)], ids=lambda o: o or "")
def test_params_yaml_and_each_overlay_over_it_validate(overlays):
    experiment = load_experiment([REPO_ROOT / "params.yaml", *(REPO_ROOT / o for o in overlays)])
    trained = [spec.name for spec in experiment.models]
    if overlays == ("params-real.yaml",):  # it names the demo model it drops
        assert set(trained) == set(DEMO_MODELS) - {"vgg16_transfer"} | {
            "lite0_probe", "lite_probe", "lite0_transfer"}
    else:
        assert trained == DEMO_MODELS


def test_params_yaml_holds_choices_only():
    """Every value params.yaml sets differs from its default: the rest lives in configs.py."""
    params = read_params(REPO_ROOT / "params.yaml")
    defaults = {name: to_mapping(cls()) for name, cls in STAGE_CONFIGS.items()}
    for section in STAGE_CONFIGS:
        for key, value in (params[section] or {}).items():
            assert value != defaults[section][key], f"params.yaml: {section}.{key} = default"
    for name, entry in params["models"].items():
        default = model_spec(name, {"kind": entry["kind"]}).as_entry()
        same = [k for k, v in entry.items() if k != "kind" and v == default[k]]
        # backbone: named for the reader although it is the transfer default
        assert same in ([], ["backbone"]), f"params.yaml: models.{name} restates {same}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_holds_only_what_differs_from_params_yaml(overlay):
    base = load_experiment([REPO_ROOT / "params.yaml"]).sections()
    raw = read_params(REPO_ROOT / overlay)
    raw.pop("every_model", None)  # per kind, not per path: test_every_model_... below
    for path, shown in _leaf_items(raw):
        node = base
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        assert node is None or repr(node) != shown, f"{overlay}: {path} restates params.yaml"


def test_overlays_compose_later_wins_and_null_removes(tmp_path):
    from postergenre.typed_config import load_params

    base, over = tmp_path / "base.yaml", tmp_path / "over.yaml"
    base.write_text("augment: {image_size: 48, seed: 1}\nmodels:\n  a: {kind: scratch}\n"
                    "  b: {kind: transfer}\n")
    over.write_text("augment: {seed: 2}\nmodels:\n  b: null\n  c: {kind: scratch}\n")
    merged = load_params([base, over], ["augment.jitter=0.2"])
    assert merged == {"augment": {"image_size": 48, "seed": 2, "jitter": 0.2},
                      "models": {"a": {"kind": "scratch"}, "c": {"kind": "scratch"}}}


def test_every_model_reaches_a_model_no_overlay_names(tmp_path):
    """Adding a model is one entry in params.yaml: the tiny overlay shrinks it too."""
    params = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    params.write_text(text + "  my_cnn:\n    kind: scratch\n    dense_units: 512\n")
    experiment = load_experiment([params, REPO_ROOT / "params-tiny.yaml"])
    (mine,) = [spec for spec in experiment.models if spec.name == "my_cnn"]
    assert (mine.config.epochs, mine.config.dense_units) == (1, 8)


def test_an_overlay_naming_a_model_nobody_trains_is_named(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text("models:\n  renamed_cnn: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"models\.renamed_cnn: no kind"):
        load_experiment([REPO_ROOT / "params.yaml", over])


def test_every_setting_has_a_help_line():
    classes = [*STAGE_CONFIGS.values(), *MODEL_KINDS.values()]
    for cls in classes:
        for name, _, _, help_text in describe_fields(cls):
            assert len(help_text) > 8, f"{cls.__name__}.{name}"


def test_defaults_round_trip_through_plain_values():
    for cls in [*STAGE_CONFIGS.values(), *MODEL_KINDS.values()]:
        assert from_mapping(cls, to_mapping(cls()), "x") == cls()


@pytest.mark.parametrize(("cls", "values", "message"), [
    (SplitConfig, {"seed": 1, "sed": 2}, "split.sed: unknown setting; known: train_fraction"),
    (SplitConfig, {"train_fraction": "most"}, "split.train_fraction: 'most' is not a finite"),
    (SplitConfig, {"train_fraction": float("nan")}, "split.train_fraction: nan is not a "),
    (AugmentConfig, {"jitter": "inf"}, "augment.jitter: 'inf' is not a finite number"),
    (SplitConfig, {"train_fraction": 0.9}, "must leave room for a test split"),
    (SplitConfig, {"train_fraction": 0}, "split.train_fraction: 0.0 must be > 0"),
    (AugmentConfig, {"image_size": 3.5}, "augment.image_size: 3.5 is not an integer"),
    (AugmentConfig, {"image_size": 16}, "augment.image_size: 16 must be >= 32"),
    (AugmentConfig, {"transforms": ["hflip", "spin"]}, "'spin' is not one of hflip"),
    (AugmentConfig, {"transforms": [], "max_upsample": 2}, "needs at least one transform"),
    (GateConfig, {"genre_ap_floors": {"Cartoon": 0.1}}, "unknown genre 'Cartoon'"),
    (GateConfig, {"genre_ap_floors": {"Drama": "high"}}, "gate.genre_ap_floors.Drama"),
    (IngestConfig, {"tmdb": {"poster_size": "huge"}}, "ingest.tmdb.poster_size: 'huge'"),
    (IngestConfig, {"demo": {"n_posters": True}}, "ingest.demo.n_posters: True is not an"),
])
def test_bad_values_are_named(cls, values, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        from_mapping(cls, values, cls.__name__.removesuffix("Config").lower()
                     if cls is not IngestConfig else "ingest")


def test_values_as_kfp_and_the_command_line_pass_them():
    # KFP passes numbers through JSON (3.0 for 3); flags and --set pass strings.
    config = from_mapping(AugmentConfig, {"image_size": 96.0, "transforms": "hflip,crop",
                                          "jitter": "0.2"}, "augment")
    assert (config.image_size, config.transforms, config.jitter) == (96, ("hflip", "crop"),
                                                                     0.2)
    assert from_mapping(GateConfig, {"genre_ap_floors": "Drama=0.3"}, "gate"
                        ).genre_ap_floors == {"Drama": 0.3}


def test_models_are_named_entries_with_a_kind():
    spec = model_spec("lite0_transfer", {"kind": "transfer", "backbone": "efficientnet_lite0"})
    assert spec.kind == "transfer" and spec.config.backbone == "efficientnet_lite0"
    assert spec.as_entry()["kind"] == "transfer"
    for name, entry, message in (
            ("Bad-Name", {"kind": "scratch"}, "lower-case letters"),
            ("null", {"kind": "scratch"}, "name of a baseline"),
            ("rnn", {"kind": "recurrent"}, "models.rnn.kind: 'recurrent' is not one of"),
            ("cnn", {"kind": "scratch", "filters": 3}, "models.cnn.filters: unknown")):
        with pytest.raises(ConfigError, match=message):
            model_spec(name, entry)
    with pytest.raises(ConfigError, match="at least one model"):
        experiment_from_params({"models": {}})
    with pytest.raises(ConfigError, match="unknown section 'train_vgg16'"):
        experiment_from_params({"train_vgg16": {}})


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SplitConfig().seed = 3  # type: ignore[misc]


def test_a_yaml_alias_bomb_is_refused_naming_the_file(tmp_path):
    """Nine lines that stand for 10^9 values: refused before anything expands them (a
    walk, a merge, an error message), in a bounded number of steps."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "params.yaml"
    bomb.write_text("\n".join(lines) + "\nsplit: {seed: *a8}\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: expands to more than 100,000 values"):
        read_params(bomb)


def test_an_error_shows_a_huge_value_short():
    with pytest.raises(ConfigError) as error:
        from_mapping(SplitConfig, {"seed": [list(range(1000))] * 1000}, "split")
    assert len(str(error.value)) < 200, str(error.value)


@pytest.mark.parametrize("bad", ["models: {scratch_cnn: {learning_rate: .nan}}",
                                 "split: {train_fraction: .inf}"])
def test_nan_and_infinity_stop_every_entry_before_it_starts(tmp_path, capsys, bad):
    """Training's, split's and the compiler's settings all pass the one finite check: one
    line naming the key, exit 2, nothing written (they once trained on NaN, crashed with
    an IndexError, crashed the compiler)."""
    from postergenre.cli import main

    (tmp_path / "bad.yaml").write_text(bad + "\n")
    key = "scratch_cnn.learning_rate: nan" if "nan" in bad else "split.train_fraction: inf"
    params = ["--params", str(REPO_ROOT / "params.yaml"), "--params", str(tmp_path / "bad.yaml")]
    for command in (["params"], ["pipeline", "compile", "--output", str(tmp_path / "p.yaml")]):
        assert main([*command, *params]) == 2, command
        assert f"{key} is not a finite number" in capsys.readouterr().err, command
    assert not (tmp_path / "p.yaml").exists()
