"""Checks on the source as a whole: the package type-checks (it ships py.typed), and no
test module imports another (what they share lives in tests/helpers.py)."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_the_package_type_checks():
    """mypy over the package and the Kubeflow wrappers, as pyproject.toml configures it."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_no_test_module_imports_another():
    imports = {path.name: re.findall(r"^\s*(?:from|import) tests\.(test_\w+)",
                                     path.read_text(), re.M)
               for path in (REPO_ROOT / "tests").glob("*.py")}
    assert not {name: found for name, found in imports.items() if found}
