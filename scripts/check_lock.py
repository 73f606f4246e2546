"""Is a lock complete? Every requirement of every locked package, extras included, must be
locked too, at a version it accepts: what makes an install with `--no-deps` safe.
`pip check` alone does not say so: it never looks at what an extra requires.

    python scripts/check_lock.py LOCK [REQUIREMENT ...]

Reads each package's requirements from the metadata installed in the running environment
(so run it with the interpreter the lock was installed into), starting from every locked
package and from the REQUIREMENTs given (e.g. `dvc[s3]`: the project's own, with their
extras). Prints each gap and exits 1, or exits 0 in silence. Standard library and pip's
vendored `packaging` only: it runs in a bare image's venv (scripts/install_lock.sh).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a venv with nothing but pip
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(lock_text: str) -> dict[str, str]:
    """name -> version of each `name==version` line of a requirements file."""
    return {canonicalize_name(name): version for name, version in PIN.findall(lock_text)}


def gaps(pinned: dict[str, str], roots: list[str] = ()) -> list[str]:
    """The requirements the lock misses or pins outside their range, walking from every
    locked package and from `roots`, each with the extras asked of it."""
    todo = [(Requirement(f"{name}=={version}"), "the lock")
            for name, version in pinned.items()]
    todo += [(Requirement(r), "the command line") for r in roots]
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    while todo:
        req, wanted_by = todo.pop()
        name = canonicalize_name(req.name)
        asked = f"{req.name}{req.specifier}" + (f" (extras {sorted(req.extras)})" if req.extras
                                                else "")
        if name not in pinned:
            problems.append(f"{asked}, which {wanted_by} requires, is not locked")
            continue
        if not req.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{asked}, which {wanted_by} requires: the lock pins "
                            f"{pinned[name]}")
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name}=={pinned[name]} is locked but not installed")
                break
            if canonicalize_name(dist.version) != canonicalize_name(pinned[name]):
                problems.append(f"{name}=={pinned[name]} is locked, {dist.version} installed")
            environment = {**default_environment(), "extra": extra}
            parent = f"{name}[{extra}]" if extra else name
            todo += [(dep, parent) for dep in map(Requirement, dist.requires or [])
                     if dep.marker is None or dep.marker.evaluate(environment)]
    return sorted(set(problems))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    lock, *roots = argv
    problems = gaps(pins(Path(lock).read_text(encoding="utf-8")), roots)
    for problem in problems:
        print(f"{lock}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
