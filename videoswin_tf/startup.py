"""Starting TensorFlow without its C++ start-up lines.

TensorFlow 2.21 prints its C++ start-up lines (oneDNN notices, a failed CUDA probe on a CPU
machine) straight to file descriptor 2 when it is imported, whatever TF_CPP_MIN_LOG_LEVEL says
afterwards; they would bury the commands' progress and reports. The package runs
`start_tensorflow_quietly` before it imports Keras, so the commands (``vswin-predict``,
``vswin-convert``) and ``import videoswin_tf`` start quietly. This module imports nothing of
TensorFlow or Keras itself.
"""

from __future__ import annotations

import os
import sys


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the process's stderr sent to /dev/null.

    Does nothing when TensorFlow is already imported, when ``KERAS_BACKEND`` names another
    backend (JAX and torch users need not pay for TensorFlow's import), or when
    TF_CPP_MIN_LOG_LEVEL is set: set it (e.g. to 0) to see TensorFlow's start-up lines, such as
    why a GPU was not found.
    """
    if (
        "tensorflow" in sys.modules
        or "TF_CPP_MIN_LOG_LEVEL" in os.environ
        or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"
    ):
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


start_tensorflow_quietly()
