"""Remote storage (`s3://` and any fsspec URL) shared by the registry and weight loading.

Credentials and the endpoint come from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL) or the AWS profile, never from arguments.
"""

from __future__ import annotations

import os


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL such as `s3://bucket/prefix` (a `file://` URL is local)."""
    return "://" in str(location) and not str(location).startswith("file://")


def remote_fs(url: str):
    """(filesystem, path without trailing slash) for a remote URL.

    A fresh instance each call: fsspec caches one per argument set, which would outlive a
    changed endpoint (AWS_ENDPOINT_URL) within one process.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(url), skip_instance_cache=True)
    return fs, root.rstrip("/")
