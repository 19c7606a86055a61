"""Class-name label maps: the three that ship with the package, or a user's own file."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

# Label maps that ship in ``videoswin_tf/label_maps/`` (sources in its README.md).
SHIPPED_LABELS = ("k400", "k600", "sthv2")


def load_labels(name_or_path: str | os.PathLike, num_classes: int | None = None) -> list[str]:
    """Class names, line ``i`` being class ``i``.

    Args:
        name_or_path: a shipped label map (``"k400"``, ``"k600"``, ``"sthv2"``) or the path of
            a text file with one class name per line.
        num_classes: when given, the number of names the file must hold (the model's classes).

    Raises:
        ValueError: an unknown name, a missing or empty file, or a count that differs from
            ``num_classes``.
    """
    if str(name_or_path) in SHIPPED_LABELS:
        source = importlib.resources.files("videoswin_tf") / "label_maps" / f"{name_or_path}.txt"
    else:
        source = Path(name_or_path)
        if not source.is_file():
            raise ValueError(
                f"label map {str(name_or_path)!r} is neither a shipped one "
                f"({', '.join(SHIPPED_LABELS)}) nor a file; pass a text file with one class "
                "name per line"
            )
    names = source.read_text(encoding="utf-8").splitlines()
    while names and not names[-1].strip():
        names.pop()
    if not names:
        raise ValueError(f"label map {source} holds no class names; expected one per line")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"label map {source} has {len(names)} class names but the model has {num_classes} "
            "classes; pass the label file the checkpoint was trained with"
        )
    return names
