"""Starting TensorFlow for the console scripts, without its C++ start-up lines.

TensorFlow 2.21 prints its start-up lines (absl's "All log messages before
absl::InitializeLog()" warning, the oneDNN notice, a failed CUDA probe on a CPU machine)
straight to file descriptor 2 while it is imported and first lists its devices, before it
reads ``TF_CPP_MIN_LOG_LEVEL``: even ``TF_CPP_MIN_LOG_LEVEL=3`` prints them. In a command's
output they would bury the progress and the reports, so ``vswin-predict`` and ``vswin-convert``
call `start_tensorflow_quietly` before anything imports Keras. Importing ``videoswin_tf`` does
not: a library leaves the process's file descriptors and logging alone.

This module imports nothing of TensorFlow or Keras itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# TF_CPP_MIN_LOG_LEVEL values that ask for TensorFlow's INFO (0) or WARNING (1) lines.
SHOW_LEVELS = ("0", "1")
# The level set when the user has set none: TensorFlow's INFO lines after its start-up (the
# graph optimizer's "Starting new session" of each ONNX export, say) hidden, warnings shown.
DEFAULT_LEVEL = "1"


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and list its devices, hiding its start-up lines unless the user set
    ``TF_CPP_MIN_LOG_LEVEL`` to ``0`` or ``1``.

    The rule, by the value of ``TF_CPP_MIN_LOG_LEVEL``:

    - unset, ``2`` or ``3`` (or any other value): the start-up is quiet. File descriptor 2 goes
      to ``/dev/null`` while TensorFlow is imported and lists its devices, then comes back, so
      errors afterwards (and TensorFlow's own later messages, filtered as the variable says)
      are shown. ``2`` and ``3`` need this too: TensorFlow prints these lines before it reads
      the variable.
    - ``0`` or ``1``: TensorFlow starts as it would on its own and prints its lines as it
      prints them (set ``TF_CPP_MIN_LOG_LEVEL=0`` to see, e.g., why no GPU was found).

    When the variable is unset it is set to `DEFAULT_LEVEL` (``1``) before TensorFlow is
    imported, so that its INFO lines stay out of the command's output afterwards too (grappler's
    "Starting new session" and "Number of eligible GPUs" whenever tf2onnx optimizes a graph); a
    value the user set is never changed. Nothing happens when TensorFlow is already imported
    or when ``KERAS_BACKEND`` names another backend (JAX and torch users need not pay for
    TensorFlow's import).

    Raises:
        ImportError: TensorFlow is not installed (its traceback shows: stderr is back by then).
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    shown = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in SHOW_LEVELS
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    with contextlib.nullcontext() if shown else _fd2_to_devnull():
        import tensorflow

        tensorflow.config.list_physical_devices()


@contextlib.contextmanager
def _fd2_to_devnull() -> Iterator[None]:
    """File descriptor 2 (what C++ code writes to) goes to /dev/null inside, and comes back."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
