"""Check of the GPU image (docker/Dockerfile.gpu): at build time, on a machine with no
GPU, and on a GPU node (`--gpu`, the gpu-check Job of `postergenre pipeline gpu-check`).

TensorFlow must import, report a CUDA build (tf.sysconfig.get_build_info()) whose CUDA
and cuDNN major versions are those of the installed NVIDIA wheels, and those wheels'
libraries must load. The driver, libcuda, comes from the node at run time (GKE's device
plugin mounts it under /usr/local/nvidia/lib64, which the image puts on its library
path; the NVIDIA container toolkit mounts it into the loader's own folders): at build
time it is reported if present; with `--gpu` it must load, support the wheels' CUDA
major version (cuDriverGetVersion), and TensorFlow must list a GPU. Exit status 1, with
the reasons, when any of it fails.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import os
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


# The driver's library, as the CUDA runtime opens it.
DRIVER = "libcuda.so.1"


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _loaded_from(name: str) -> str:
    """Where the process mapped the library `name` from ('' if not found)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return ""
    paths = {line.split()[-1] for line in maps.splitlines()
             if line.split()[-1].startswith("/") and Path(line.split()[-1]).name == name}
    return sorted(paths)[0] if paths else ""


def check_driver() -> tuple[str | None, str]:
    """(the CUDA version the driver supports, 'X.Y', and where libcuda came from), or
    (None, why it could not be used). Loads the driver as the CUDA runtime does, by its
    soname: LD_LIBRARY_PATH first, then the loader's cache and folders."""
    try:
        driver = ctypes.CDLL(DRIVER)
    except OSError as err:
        return None, (f"{DRIVER} does not load ({err}); LD_LIBRARY_PATH="
                      f"{os.environ.get('LD_LIBRARY_PATH', '')!r}")
    version = ctypes.c_int(0)
    status = driver.cuDriverGetVersion(ctypes.byref(version))
    where = _loaded_from(DRIVER) or DRIVER
    if status != 0:
        return None, f"{where}: cuDriverGetVersion failed (CUresult {status})"
    return f"{version.value // 1000}.{version.value % 1000 // 10}", where


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


def too_old(supported: str, runtime: str) -> bool:
    """Whether a driver that supports CUDA `supported` cannot run the CUDA `runtime` of the
    wheels (CUDA's minor version compatibility: the same major version or newer)."""
    return int(_major(supported)) < int(_major(runtime))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="on a GPU node: the driver must "
                        "load and support the wheels' CUDA, and TensorFlow must see a GPU")
    args = parser.parse_args(argv)
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
    supported, where = check_driver()
    if supported is None:
        print(f"driver: {where}" + ("" if args.gpu else " (expected where there is no GPU: "
                                    "the node provides the driver at run time)"))
        if args.gpu:
            problems.append(f"no usable NVIDIA driver: {where}")
    else:
        print(f"driver: {where}, supports CUDA {supported}")
        runtime = wheels.get("nvidia-cuda-runtime-cu12", "")
        if runtime and too_old(supported, runtime):
            problems.append(f"the driver supports CUDA {supported}, older than the image's "
                            f"CUDA {runtime} (nvidia-cuda-runtime-cu12): upgrade the node's "
                            "driver")
    if args.gpu:
        gpus = tf.config.list_physical_devices("GPU")
        print(f"TensorFlow {tf.__version__} sees {gpus}")
        if not gpus:
            problems.append("TensorFlow sees no GPU: check the node's driver, the device "
                            "plugin and the pod's nvidia.com/gpu limit")
    for problem in problems:
        print(f"check_cuda: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
