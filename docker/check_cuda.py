"""Build-time check of the GPU image (docker/Dockerfile.gpu), on a machine with no GPU.

TensorFlow must import, report a CUDA build (tf.sysconfig.get_build_info()) whose CUDA
and cuDNN major versions are those of the installed NVIDIA wheels, and those wheels'
libraries must load. Only the driver (libcuda, mounted by the NVIDIA container toolkit at
run time) may be missing. Exit status 1, with the reason, when any of it fails.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import sys
from pathlib import Path

# The libraries TensorFlow's GPU kernels open, by the wheel that carries each.
NEEDED = {
    "nvidia-cuda-runtime-cu12": "libcudart.so.12",
    "nvidia-cublas-cu12": "libcublas.so.12",
    "nvidia-cufft-cu12": "libcufft.so.11",
    "nvidia-cusparse-cu12": "libcusparse.so.12",
    "nvidia-cusolver-cu12": "libcusolver.so.11",
    "nvidia-cudnn-cu12": "libcudnn.so.9",
    "nvidia-nccl-cu12": "libnccl.so.2",
    "nvidia-nvjitlink-cu12": "libnvJitLink.so.12",
}


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _load_all(paths: list[Path]) -> dict[str, str]:
    """Load every library, retrying those whose dependencies were not loaded yet (the
    wheels find each other only through libraries already in the process)."""
    pending, errors = list(paths), {}
    while pending:
        errors = {}
        for path in pending:
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as err:
                errors[path.name] = str(err)
        if len(errors) == len(pending):
            break
        pending = [p for p in pending if p.name in errors]
    return errors


def main() -> int:
    import tensorflow as tf

    info = dict(tf.sysconfig.get_build_info())
    print(f"tensorflow {tf.__version__} build info: {info}")
    problems = []
    if not info.get("is_cuda_build"):
        problems.append("TensorFlow is not a CUDA build")
    wheels = {}
    for name in NEEDED:
        try:
            wheels[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed (tensorflow[and-cuda] brings it)")
    print("CUDA wheels: " + ", ".join(f"{n}=={v}" for n, v in wheels.items()))
    for key, wheel in (("cuda_version", "nvidia-cuda-runtime-cu12"),
                       ("cudnn_version", "nvidia-cudnn-cu12")):
        built = str(info.get(key, ""))
        if wheel in wheels and _major(built) != _major(wheels[wheel]):
            problems.append(f"TensorFlow was built with {key} {built!r}, "
                            f"the image has {wheel}=={wheels[wheel]}")
    site = Path(tf.__file__).resolve().parents[1]
    paths = []
    for wheel, soname in NEEDED.items():
        if wheel not in wheels:
            continue
        found = sorted(site.glob(f"nvidia/*/lib/{soname}"))
        if not found:
            problems.append(f"{soname} ({wheel}) not under {site}/nvidia")
        paths += found
    for name, error in _load_all(paths).items():
        problems.append(f"{name} does not load: {error}")
    print(f"loaded {len(paths)} CUDA libraries from the wheels")
    for problem in problems:
        print(f"check_cuda: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
