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
from tests.conftest import REPO_ROOT

PARAMS_FILES = ("params.yaml", "params-study.yaml")


def _leaf_keys(value, prefix=""):
    if isinstance(value, dict):
        return {k for key, inner in value.items() for k in _leaf_keys(inner, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_params_files_validate(name):
    experiment = load_experiment(str(REPO_ROOT / name))
    assert [spec.name for spec in experiment.models] == ["scratch_cnn", "vgg16_transfer"]


def test_the_study_file_has_the_same_keys_as_params_yaml():
    demo, study = (read_params(REPO_ROOT / name) for name in PARAMS_FILES)
    assert _leaf_keys(study) == _leaf_keys(demo)
    assert load_experiment(str(REPO_ROOT / "params-study.yaml")).augment.image_size == 128


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
    (SplitConfig, {"train_fraction": "most"}, "split.train_fraction: 'most' is not a number"),
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
