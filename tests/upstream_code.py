"""Where the tests find innat/VideoSwin's code (the seed's v1, the Keras 3 rewrite's v2), which
parity runs as the reference: the folder an environment variable names, else
``shared/reference/innat_videoswin/<version>`` beside the checkout or one of its parents."""

from __future__ import annotations

import os
from pathlib import Path


def upstream_code(variable: str, version: str, what: str) -> Path:
    """The folder holding ``what``'s ``videoswin`` package: the one ``variable`` names, else
    ``shared/reference/innat_videoswin/<version>`` above this file.

    Raises:
        FileNotFoundError: neither is there (what to set).
    """
    if variable in os.environ:
        return Path(os.environ[variable])
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "reference" / "innat_videoswin" / version
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"{what} (shared/reference/innat_videoswin/{version}) is not beside this checkout; set "
        f"{variable} to the folder that holds its videoswin package"
    )
