"""augment's worker processes (render.py): the same shards as rendering in this process,
no TensorFlow in a worker, a bad poster named from inside a worker, a caller's script
without a main guard, and as many workers as the CPUs (and a pod's CPU limit) allow."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from postergenre.configs import AugmentConfig
from postergenre.data.augment import augment_and_shard
from postergenre.data.images import PosterDecodeError, _cgroup_cpu_limit, available_cpus
from postergenre.data.labels import read_labels
from postergenre.data.render import (
    PosterJob,
    RenderPool,
    RenderSettings,
    render_batch,
    render_poster,
)
from tests.conftest import TINY_IMAGE

CONFIG = AugmentConfig(image_size=TINY_IMAGE)


def _example(framed: bytes) -> tf.train.Example:
    """The Example inside one TFRecord frame (length, its CRC, the record, its CRC)."""
    length = int.from_bytes(framed[:8], "little")
    assert len(framed) == 8 + 4 + length + 4
    return tf.train.Example.FromString(framed[12:12 + length])


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_pool_renders_what_this_process_renders(tiny_data, tiny_split, tiny_prepared):
    settings = RenderSettings(TINY_IMAGE, tuple(CONFIG.transforms), CONFIG.crop_min_scale,
                              CONFIG.jitter, CONFIG.seed, CONFIG.jpeg_quality)
    table = read_labels(tiny_split / "train.csv")
    labels = np.eye(19, dtype=np.uint8)[:len(table) % 19 + 1].max(axis=0)
    jobs = [PosterJob(str(tiny_data / poster), movie, "train", labels.tobytes(), copies)
            for poster, movie, copies in zip(table["poster"][:6], table["imdb_id"][:6],
                                             [0, 1, 2, 0, 3, 1], strict=True)]
    here = render_batch(jobs, settings)
    with RenderPool(2) as pool:
        there = pool.submit(jobs, settings).result()
        # A worker holds OpenCV and NumPy, not TensorFlow (seconds and a gigabyte to start).
        assert pool._executor.submit(eval, "'tensorflow' in __import__('sys').modules"
                                     ).result() is False
    assert there == here
    assert [len(records) for records in here] == [1, 2, 3, 1, 4, 2]
    # Each poster's first record is the poster itself, then its copies, each its own.
    for job, records in zip(jobs, here, strict=True):
        parsed = [_example(r).features.feature for r in records]
        assert [f["imdb_id"].bytes_list.value[0].decode() for f in parsed] == \
            [job.imdb_id] * len(records)
        names = [f["augmentation"].bytes_list.value[0].decode() for f in parsed]
        assert names[0] == "none" and "none" not in names[1:]
        assert list(parsed[0]["labels"].int64_list.value) == labels.tolist()
        assert len(set(records)) == len(records)


def test_a_bad_poster_is_named_from_inside_the_worker(tiny_data, tiny_split, tmp_path):
    data = tmp_path / "data"
    data.symlink_to(tiny_data, target_is_directory=True)
    table = read_labels(tiny_split / "validation.csv")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "posters").mkdir()
    for name in ("labels.csv",):
        (broken / name).write_bytes((tiny_data / name).read_bytes())
    for poster in (tiny_data / "posters").iterdir():
        (broken / "posters" / poster.name).symlink_to(poster)
    bad = broken / table["poster"].iloc[0]
    bad.unlink()
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(PosterDecodeError, match=f"{bad}: not a decodable image"):
        augment_and_shard(broken, tiny_split, tmp_path / "out", CONFIG)


UNGUARDED = """
import sys
from postergenre.data.augment import augment_and_shard
from postergenre.configs import AugmentConfig
augment_and_shard(sys.argv[1], sys.argv[2], sys.argv[3],
                  AugmentConfig(image_size={size}, shard_size=64))
print("done")
"""


def test_a_script_without_a_main_guard_works(tiny_data, tiny_split, tiny_prepared, tmp_path):
    """Spawned and fork-server workers re-run the parent's main script unless told not to:
    this one would start augment again in each worker."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(size=TINY_IMAGE))
    done = subprocess.run([sys.executable, str(script), str(tiny_data), str(tiny_split),
                           str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["done"]
    assert _digests(tmp_path / "out") == _digests(tiny_prepared)


def _alive_after(processes: list, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in processes if p.is_alive()]


def test_workers_start_with_the_pool_and_end_after_it(tiny_data, tiny_split):
    settings = RenderSettings(TINY_IMAGE, ("hflip",), 0.8, 0.1, 0, 90)
    table = read_labels(tiny_split / "train.csv")
    job = PosterJob(str(tiny_data / table["poster"].iloc[0]), table["imdb_id"].iloc[0],
                    "train", bytes(19), 0)
    with RenderPool(2) as pool:
        # Both workers exist before any task: they come up while the caller reads tables.
        workers = list(pool._executor._processes.values())
        assert len(workers) == 2
        assert len(pool.submit([job], settings).result()) == 1
    # A finished pool is not waited for, but its workers end on their own.
    assert _alive_after(workers, 30) == []

    # An error inside the pool: the workers are waited for before it propagates.
    with pytest.raises(RuntimeError, match="stop"), RenderPool(2) as pool:
        workers = list(pool._executor._processes.values())
        pool.submit([job] * 8, settings)
        raise RuntimeError("stop")
    assert _alive_after(workers, 0) == []


def test_render_poster_matches_the_pool_for_copies(tiny_data, tiny_split):
    settings = RenderSettings(TINY_IMAGE, ("hflip", "crop", "jitter"), 0.8, 0.1, 7, 90)
    table = read_labels(tiny_split / "train.csv")
    job = PosterJob(str(tiny_data / table["poster"].iloc[0]), table["imdb_id"].iloc[0],
                    "train", bytes(19), 5)
    first, second = render_poster(job, settings), render_poster(job, settings)
    assert first == second and len(first) == 6  # seeded by (seed, movie, copy): repeatable


@pytest.mark.parametrize(("text", "cpus"), [("200000 100000\n", 2), ("150000 100000", 2),
                                            ("50000 100000", 1), ("max 100000", None),
                                            ("garbage", None), ("100000 0", None)])
def test_a_cgroup_v2_cpu_quota_is_read_as_cpus(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text)
    assert _cgroup_cpu_limit(str(tmp_path)) == cpus


@pytest.mark.parametrize("folder", ["cpu,cpuacct", "cpu"])
@pytest.mark.parametrize(("quota", "cpus"), [("400000", 4), ("250000", 3), ("-1", None)])
def test_a_cgroup_v1_cpu_quota_is_read_as_cpus(tmp_path, folder, quota, cpus):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / folder / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_limit(str(tmp_path)) == cpus


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert _cgroup_cpu_limit(str(tmp_path)) is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
def test_available_cpus_never_exceed_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
