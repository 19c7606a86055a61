"""Importing torchvision next to a CPU-only torch.

The registry's torchvision wheels are CUDA builds: with a CPU torch their compiled operators do
not load, and ``import torchvision`` stops in ``torchvision/_meta_registrations.py`` (which
registers meta kernels for those operators). The Video Swin models use none of them, so an empty
module put in its place lets torchvision (and timm, which imports it) import and run.
"""

from __future__ import annotations

import sys
import types

META_REGISTRATIONS = "torchvision._meta_registrations"


def import_torchvision() -> types.ModuleType:
    """``torchvision``, imported with the shim when it is not imported yet.

    Raises:
        ImportError: torchvision is not installed; the message says how to install it.
    """
    if "torchvision" not in sys.modules and META_REGISTRATIONS not in sys.modules:
        sys.modules[META_REGISTRATIONS] = types.ModuleType(META_REGISTRATIONS)
    try:
        import torchvision
    except ImportError as error:
        raise ImportError(
            f"the torchvision reference needs torchvision ({error}); install it with: "
            f"pip install videoswin-tf[convert]"
        ) from error
    return torchvision
