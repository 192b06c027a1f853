"""The package layout's promises that imports alone can break: what runs jobs and fires
schedules (and will run in a worker process without the web stack) loads no Flask."""

from __future__ import annotations

import subprocess
import sys

import pytest

WITHOUT_FLASK = [
    "app",
    "app.scheduling",
    "app.services.submit",
    "app.security.roles",
    "app.security.signatures",
    "app.alerts.dispatcher",
    "app.background",
]


@pytest.mark.parametrize("module", WITHOUT_FLASK)
def test_module_imports_no_flask(module: str) -> None:
    # A fresh interpreter: this test process has long imported Flask for other tests.
    check = f"import sys, {module}; sys.exit('flask' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} loads Flask\n{done.stderr}"
