#!/bin/sh
# Install exactly the files a lock names, and resolve nothing: the one locked install, used
# by `make install` and by both Dockerfiles.
#
#   scripts/install_lock.sh PYTHON LOCK [PIP OPTIONS...]
#
# --no-deps: pip installs the lock's pins and never looks at what they require, so neither a
# new upstream release nor the installer's own version can change what gets installed. (A
# resolving install broke on 2026-12-06: pip before 23.3 resolves an extras requirement,
# google-auth[pyopenssl], to the newest release and then refuses it as unpinned.)
# --require-hashes: every file must have one of the lock's sha256s.
# Then the lock must prove complete (every requirement of every locked package, extras
# included, locked too), else the install fails here rather than at import time.
# POSIX sh: the image bases have no bash guarantee.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 PYTHON LOCK [PIP OPTIONS...]" >&2
    exit 2
fi
python=$1
lock=$2
shift 2
count=$(grep -c '^[A-Za-z0-9]' "$lock")
echo "installing the $count packages pinned in $lock (hashes checked, nothing resolved)..." >&2
"$python" -m pip install --no-deps --require-hashes --disable-pip-version-check "$@" -r "$lock"
# pip check, then what it never looks at: what the extras require (scripts/check_lock.py).
if ! "$python" -m pip check >&2 || ! "$python" "$(dirname "$0")/check_lock.py" "$lock"; then
    echo "$lock is incomplete: a locked package needs something the lock does not pin" \
        "(above); run 'make lock' and commit the result" >&2
    exit 1
fi
