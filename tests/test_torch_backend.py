"""The model tests again, on Keras's PyTorch backend (torch is installed for the converter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def test_model_tests_pass_on_the_torch_backend():
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    probe = subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "torch"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).with_name("test_model.py"))],
        env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
