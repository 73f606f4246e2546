"""`predict` on fixture posters: 19 probabilities each, bad input reported per poster."""

import csv
import functools
import http.server
import threading

import pytest

from postergenre.cli import main
from postergenre.genres import GENRES
from postergenre.predict import expand_posters, load_predictor, predict_posters
from tests.eval_helpers import train_tiny


@pytest.fixture(scope="module")
def model_dir(tiny_prepared, tmp_path_factory):
    return train_tiny(tiny_prepared, tmp_path_factory.mktemp("predict") / "model")


@pytest.fixture
def posters(tiny_data, tmp_path):
    folder = tmp_path / "posters"
    folder.mkdir()
    for source in sorted((tiny_data / "posters").iterdir())[:3]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.jpg").write_text("not an image")
    return folder


@pytest.fixture
def http_root(posters):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(posters))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_folder_url_and_bad_input(model_dir, posters, http_root, tmp_path):
    predictor = load_predictor(model_dir)
    first = sorted(posters.glob("tt*.jpg"))[0]
    items = expand_posters([str(posters), f"{http_root}/{first.name}",
                            f"{http_root}/missing.jpg", str(tmp_path / "nowhere.png")])
    results = predict_posters(predictor, items, batch_size=2, explain_dir=tmp_path / "cam",
                              progress=False)
    assert len(results) == 7
    by_name = {r.poster: r for r in results}
    for r in results:
        if r.error is None:
            assert r.probabilities.shape == (19,)
            assert ((r.probabilities >= 0) & (r.probabilities <= 1)).all()
    assert "not a decodable image" in by_name[str(posters / "broken.jpg")].error
    assert "cannot download" in by_name[f"{http_root}/missing.jpg"].error
    assert "cannot read" in by_name[str(tmp_path / "nowhere.png")].error
    # The URL and the file are the same poster: the same probabilities.
    url = by_name[f"{http_root}/{first.name}"].probabilities
    assert url == pytest.approx(by_name[str(first)].probabilities)
    assert len(list((tmp_path / "cam").glob("*.gradcam.png"))) == 4


@pytest.mark.slow
def test_cli_writes_csv_and_exits_nonzero_on_a_bad_poster(model_dir, posters, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(posters), "--model", str(model_dir), "--csv", str(out)])
    assert code == 1  # one poster failed; the others are still scored and written
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert [r["error"] != "" for r in rows].count(True) == 1
    good = [r for r in rows if not r["error"]]
    assert all(len([r[g] for g in GENRES if r[g] != ""]) == 19 for r in good)
    assert "broken.jpg: ERROR" in capsys.readouterr().out


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no blessed model"):
        load_predictor(registry=tmp_path / "empty-registry")


def test_gradcam_on_a_nested_vgg16_model_whose_base_reuses_the_input_name():
    import numpy as np

    from postergenre.gradcam import gradcam
    from postergenre.models import build_dense_head, build_vgg16_base, join_base_and_head

    base = build_vgg16_base(32, None)
    model = join_base_and_head(base, build_dense_head(base.output_shape[1:], 8))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    heat = gradcam(model, images, np.array([0, 5]))
    assert heat.shape == (2, 32, 32) and heat.min() >= 0 and heat.max() <= 1


# -- issue 13: pixel bombs refused before decoding; RGBA posters accepted ----------------


def _png(width: int, height: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG whose header claims width x height; `rows` is the (raw) image data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _pixel_bomb() -> bytes:
    """A small PNG declaring 20000 x 20000 grey pixels (1.2 GB once decoded to colour);
    its data holds the first 2000 rows only, but a decoder allocates for all of them."""
    return _png(20000, 20000, 0, bytes(20001 * 2000))


def _rgba_poster() -> bytes:
    import cv2
    import numpy as np

    rgba = np.random.default_rng(0).integers(0, 256, (72, 48, 4), dtype=np.uint8)
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


class _FakeModel:
    """Stands in for a Keras model: 32-pixel input, 0.6 for every genre."""

    input_shape = (None, 32, 32, 3)

    def predict_on_batch(self, pixels):
        import numpy as np

        assert pixels.shape[1:] == (32, 32, 3)
        return np.full((len(pixels), len(GENRES)), 0.6)


def test_a_pixel_bomb_is_refused_before_decoding_and_the_others_are_scored(
        tiny_data, tmp_path, monkeypatch):
    import numpy as np

    from postergenre import predict
    from postergenre.predict import Predictor

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_pixel_bomb())
    assert bomb.stat().st_size < 1_000_000
    rgba = tmp_path / "rgba.png"
    rgba.write_bytes(_rgba_poster())
    good = sorted((tiny_data / "posters").iterdir())[0]
    decoded = []
    decode = predict.decode_rgb
    monkeypatch.setattr(predict, "decode_rgb",
                        lambda data, source: decoded.append(source) or decode(data, source))
    results = predict_posters(Predictor(_FakeModel(), np.full(19, 0.5), "fake"),
                              [str(good), str(bomb), str(rgba)], progress=False)
    by_name = {r.poster: r for r in results}
    assert by_name[str(bomb)].error == (
        f"{bomb}: 20000x20000 pixels exceeds 40000000; refused before decoding")
    assert str(bomb) not in decoded  # OpenCV never saw it
    for ok in (good, rgba):  # the RGBA poster is a poster: its alpha is dropped
        assert by_name[str(ok)].error is None
        assert by_name[str(ok)].genres == list(GENRES)
