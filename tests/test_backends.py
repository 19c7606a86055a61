"""The model tests again, on Keras's other backends.

PyTorch is installed anyway (the converter needs it), so its run is part of the default suite.
JAX is optional: `make test-slow` installs the ``jax`` extra and runs it (CI does).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The model's tests, and the backbone/classifier pair's.
MODEL_TESTS = ("test_model.py", "test_backbone_classifier.py")


def run_model_tests(backend: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend}
    probe = subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == backend
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(str(Path(__file__).with_name(name)) for name in MODEL_TESTS),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_model_tests_pass_on_the_torch_backend():
    pytest.importorskip("torch")
    run_model_tests("torch")


@pytest.mark.slow
def test_model_tests_pass_on_the_jax_backend():
    pytest.importorskip("jax", reason="install the jax extra: pip install -e '.[jax]'")
    run_model_tests("jax")
