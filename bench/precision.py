"""Benchmark: scoring a model trained in mixed precision, as saved against its float32 copy.

A model trained in bfloat16 (an A100, an AMX CPU) or float16 (a T4) is saved with that
dtype policy. On a CPU without units for it, Keras emulates the low-precision
convolutions. Evaluate, `predict` and `batch-predict` score with `float32_copy` instead
(training/outputs.py). Both sides score the same posters with the same weights: the
study's scratch CNN (random weights: speed does not depend on them) at `--size` pixels,
in batches of 32, interleaved runs. The line before the result is this CPU's float32 GEMM
rate and the least CPU per poster the model's forward pass can take at it, the ceiling
for the float32 side; the last line is the result (bench/measure.py's `closing_lines`):

    ceiling: float32 GEMM G GFLOP per CPU-second ...; at least F us CPU per poster ...
    precision: R x the speed of mixed_bfloat16 as saved, for the float32 copy (... us vs
    ... us CPU per poster; wall ...), max |probability difference| ...

    .venv/bin/python bench/precision.py [--policy mixed_bfloat16] [--size 128] [--posters 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (  # noqa: E402
    closing_lines,
    forward_flops,
    gemm_gflops_per_cpu_second,
    interleaved,
    load_line,
)


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
    gemm, flops = gemm_gflops_per_cpu_second(), forward_flops(copy)
    saved_cpu, copy_cpu = runs["saved"].cpu_us_per_item, runs["copy"].cpu_us_per_item
    closing_lines(
        "precision",
        f"float32 GEMM {gemm:.0f} GFLOP per CPU-second (one thread) on this CPU "
        f"({os.cpu_count()} CPUs); "
        f"the forward pass is {flops / 1e6:.0f} MFLOP per poster at {args.size} px, at "
        f"least {1e6 * flops / (gemm * 1e9):.0f} us CPU per poster in float32",
        f"{saved_cpu / copy_cpu:.2f}x the speed of {args.policy} as saved, for the float32 "
        f"copy ({copy_cpu:.0f} us vs {saved_cpu:.0f} us CPU per poster; wall "
        f"{runs['copy'].wall_s:.2f} s vs {runs['saved'].wall_s:.2f} s for {args.posters} "
        f"posters at {args.size} px), max |probability difference| {difference:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
