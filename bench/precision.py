"""Benchmark: scoring a model trained in mixed precision, as saved against its float32 copy.

A model trained in bfloat16 (an A100, an AMX CPU) or float16 (a T4) is saved with that
dtype policy. On a CPU without units for it, Keras emulates the low-precision
convolutions. Evaluate, `predict` and `batch-predict` score with `float32_copy` instead
(training/outputs.py). Both sides score the same posters with the same weights: the
study's scratch CNN (random weights: speed does not depend on them) at `--size` pixels,
in batches of 32, interleaved runs. The line before the result is this CPU's float32 GEMM
rate, the ceiling for the float32 side's convolutions; the last line is the result:

    precision: float32 copy X.XXx the speed of mixed_bfloat16 as saved (... us vs ... us CPU
    per poster; wall ...), max |probability difference| ...

    .venv/bin/python bench/precision.py [--policy mixed_bfloat16] [--size 128] [--posters 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import interleaved, load_line  # noqa: E402


def gemm_gflops_per_cpu_second(n: int = 1024, repeats: int = 5) -> float:
    """float32 matrix products on this CPU: billions of multiply-adds x2 per CPU-second."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a  # warm-up
    cpu = time.process_time()
    for _ in range(repeats):
        a @ a
    return 2 * n**3 * repeats / (time.process_time() - cpu) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="mixed_bfloat16",
                        choices=("mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--size", type=int, default=128, help="poster side in pixels")
    parser.add_argument("--posters", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    from postergenre.configs import ScratchConfig
    from postergenre.training.models import build_scratch_cnn
    from postergenre.training.outputs import float32_copy

    print(load_line("start"))
    keras.mixed_precision.set_global_policy(args.policy)
    saved = build_scratch_cnn(args.size, ScratchConfig())
    keras.mixed_precision.set_global_policy("float32")
    with tempfile.TemporaryDirectory() as tmp:  # the round trip evaluate makes
        saved.save(os.path.join(tmp, "model.keras"))
        saved = keras.models.load_model(os.path.join(tmp, "model.keras"), compile=False)
    copy = float32_copy(saved)
    posters = np.random.default_rng(1).uniform(0, 255, (args.posters, args.size, args.size, 3)
                                                ).astype(np.float32)

    def score(model):
        return lambda: np.concatenate([model.predict_on_batch(posters[i:i + 32])
                                       for i in range(0, len(posters), 32)])

    score(saved)(), score(copy)()  # the first call builds each model's graph
    runs = interleaved({"saved": score(saved), "copy": score(copy)}, args.repeats,
                       args.posters)
    difference = float(np.abs(runs["saved"].runs[0].value - runs["copy"].runs[0].value).max())
    print(load_line("end"))
    print(f"ceiling: float32 GEMM {gemm_gflops_per_cpu_second():.0f} GFLOP per CPU-second "
          f"on this CPU ({os.cpu_count()} CPUs)")
    saved_cpu, copy_cpu = runs["saved"].cpu_us_per_item, runs["copy"].cpu_us_per_item
    print(f"precision: float32 copy {saved_cpu / copy_cpu:.2f}x the speed of {args.policy} as "
          f"saved ({copy_cpu:.0f} us vs {saved_cpu:.0f} us CPU per poster; wall "
          f"{runs['copy'].wall_s:.2f} s vs {runs['saved'].wall_s:.2f} s for {args.posters} "
          f"posters at {args.size} px), max |probability difference| {difference:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
