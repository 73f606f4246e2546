"""Issue 13 (hardened against bad input and faults): checks that belong to no one stage."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from postergenre.atomic import atomic_open, current_umask, write_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_open_would_give_them(tmp_path, umask, mode):
    """mkstemp makes 0600 files; an output must be readable as `open` would leave it."""
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        written = write_json(tmp_path / "a.json", {"x": 1})
        with atomic_open(tmp_path / "b.bin", "wb") as handle:
            handle.write(b"x")
        assert current_umask() == umask  # read, never changed
    finally:
        os.umask(old)
    for path in (written, tmp_path / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]  # no temp file


def test_a_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "c.txt") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def _final_user(dockerfile: Path) -> str:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)
    return users[-1]


def test_tasks_run_as_the_images_own_user():
    """RUN_AS_USER is what the images were built to run as and what the compiled pipeline
    asks Kubernetes for (not a constant compared with a copy of itself)."""
    from postergenre.pipelines.platform import RUN_AS_USER

    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        dockerfile = ROOT / "docker" / name
        assert _final_user(dockerfile) == f"{RUN_AS_USER}:{RUN_AS_USER}", name
        assert f"useradd --uid {RUN_AS_USER} --gid {RUN_AS_USER} " in dockerfile.read_text()
    golden = yaml.safe_load((ROOT / "tests" / "golden" / "cluster_settings.yaml").read_text())
    contexts = [task["kubernetes"]["securityContext"] for task in golden["tasks"].values()
                if "securityContext" in (task.get("kubernetes") or {})]
    assert contexts, "the golden pipeline sets no securityContext"
    for context in contexts:
        assert (context["runAsUser"], context["runAsGroup"]) == (str(RUN_AS_USER),) * 2
        assert context["runAsNonRoot"] is True
    assert RUN_AS_USER > 10000  # matches no user of the node


# -- issue 24 -----------------------------------------------------------------------------


def test_augment_image_size_has_an_upper_bound(tmp_path, capsys):
    """100000 asked 30 GB per poster; the bound is checked where params, flags and the
    pipeline's dict parameter are read, before anything is written."""
    from postergenre.cli import main
    from postergenre.configs import AugmentConfig
    from postergenre.typed_config import ConfigError, from_mapping

    with pytest.raises(ConfigError, match=r"augment\.image_size: 100000 must be <= 1024"):
        from_mapping(AugmentConfig, {"image_size": 100000}, "augment")
    assert from_mapping(AugmentConfig, {"image_size": 1024}, "augment").image_size == 1024
    assert main(["augment", "--data", str(tmp_path), "--split", str(tmp_path), "--out",
                 str(tmp_path / "out"), "--image-size", "100000"]) == 2
    assert "augment.image_size: 100000 must be <= 1024" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_model_name_with_a_trailing_newline_is_refused():
    """`$` matches before a final newline: `cnn\\n` passed as a model name."""
    from postergenre.configs import model_spec
    from postergenre.typed_config import ConfigError

    assert model_spec("cnn", {"kind": "scratch"}).name == "cnn"
    with pytest.raises(ConfigError, match="a model name is lower-case letters"):
        model_spec("cnn\n", {"kind": "scratch"})


def test_every_pickle_of_a_weights_file_goes_through_the_restricted_unpickler(tmp_path):
    """The README says so; the four small pickles around the state dict (magic number,
    protocol, sys info, storage keys) were read with plain pickle.load, which runs any
    callable a crafted file names."""
    import pickle

    from postergenre.training.lite import read_legacy_torch_state_dict

    marker = tmp_path / "ran"

    class Payload:  # unpickled by plain pickle.load, it would create the marker file
        def __reduce__(self):
            return (Path.touch, (marker,))

    for position in range(4):  # in place of each of the four small pickles
        pickles = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, []]
        pickles[position] = Payload()
        path = tmp_path / f"crafted-{position}.pth"
        with open(path, "wb") as handle:
            for item in pickles[:3]:
                pickle.dump(item, handle, protocol=2)
            pickle.dump({}, handle, protocol=2)  # an empty state dict
            pickle.dump(pickles[3], handle, protocol=2)
        with pytest.raises(pickle.UnpicklingError, match="unexpected class"):
            read_legacy_torch_state_dict(path)
        assert not marker.exists(), f"pickle {position} ran its payload"
