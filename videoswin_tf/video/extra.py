"""The optional ``video`` extra: PyAV and OpenCV, imported only when a video is read."""

from __future__ import annotations

import importlib
import types

INSTALL_HINT = "pip install videoswin-tf[video]"

# Module name -> the distribution that provides it.
PROVIDERS = {"av": "av (PyAV, FFmpeg decoding)", "cv2": "opencv-python-headless (resizing)"}


def import_extra(module: str) -> types.ModuleType:
    """Import ``module`` of the video extra, or raise an `ImportError` naming the install
    command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"reading videos needs {PROVIDERS[module]} ({error}); install it with: {INSTALL_HINT}"
        ) from error
