import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A run small enough for a test: about a second of training on one CPU core.
TINY = ["model=mlp", "steps=30", "eval_every=10"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store in tmp_path, used by this process and its children."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return uri


def run_script(script, *overrides, timeout=300):
    """Run `python script -- overrides...` in the project root; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, script, "--", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
