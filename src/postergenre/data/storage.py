"""Remote storage (`s3://` and any fsspec URL) shared by the registry and weight loading.

Credentials and the endpoint come from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL) or the AWS profile, never from arguments. On
Kubeflow they arrive as POSTERGENRE_AWS_* (pipelines/platform.py), so that KFP's launcher,
which runs in the same container and reads AWS_* for its own artifact store, never sees
them; `use_project_credentials` copies them to AWS_* inside this Python process only.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PROJECT_ENV_PREFIX = "POSTERGENRE_"
AWS_ENV_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL")


def use_project_credentials(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Copy each non-empty POSTERGENRE_AWS_* variable to its AWS_* name in this process
    (and the subprocesses it starts, such as DVC), overriding an AWS_* already set;
    return the AWS_* names set. Idempotent; a no-op where none is set (IRSA, Workload
    Identity, a local AWS profile)."""
    environ = os.environ if environ is None else environ
    copied = []
    for name in AWS_ENV_NAMES:
        value = environ.get(PROJECT_ENV_PREFIX + name)
        if value:
            environ[name] = value
            copied.append(name)
    return copied


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL such as `s3://bucket/prefix` (a `file://` URL is local)."""
    return "://" in str(location) and not str(location).startswith("file://")


def remote_fs(url: str):
    """(filesystem, path without trailing slash) for a remote URL.

    A fresh instance each call: fsspec caches one per argument set, which would outlive a
    changed endpoint (AWS_ENDPOINT_URL) within one process.
    """
    import fsspec

    use_project_credentials()
    fs, root = fsspec.core.url_to_fs(str(url), skip_instance_cache=True)
    return fs, root.rstrip("/")
