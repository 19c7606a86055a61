"""The class names a training run left in its checkpoint.

mmengine's ``Runner`` saves the training dataset's ``metainfo`` as ``meta['dataset_meta']``;
it holds ``classes`` (a tuple or list of names, class ``i`` first-to-last) when the dataset
defines them. They are read as data: the safe loader has already refused anything but plain
containers, strings and numbers there.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

META = "meta"
DATASET_META = "dataset_meta"
CLASSES = "classes"
HEAD_WEIGHT = "cls_head.fc_cls.weight"  # [classes, C]
WHERE = f"{META}.{DATASET_META}"
# Bytes of the names as JSON that a weights file's config attribute takes: HDF5 keeps an
# attribute in its object header, which holds 64 KiB in all.
MAX_RECORDED = 48 * 1024


@dataclasses.dataclass(frozen=True)
class RecordedClasses:
    """What a checkpoint says about its class names.

    Attributes:
        names: the names, one per class of the head, or None when there are none to keep.
        line: the ``[load]`` line saying so: a note when ``names`` are kept, a warning when the
            checkpoint has names that do not fit its head; None when it has none.
    """

    names: tuple[str, ...] | None = None
    line: str | None = None


def dataset_classes(raw: Any, state: dict[str, np.ndarray]) -> RecordedClasses:
    """The class names in ``raw['meta']['dataset_meta']['classes']`` when they fit the head of
    ``state`` (canonical keys): as many names as ``cls_head.fc_cls.weight`` has rows.

    A list that is not all strings, a backbone-only ``state``, a count that differs from the
    head's classes, or names longer than `MAX_RECORDED` in all give no names and a warning
    line; the conversion goes on.
    """
    meta = raw.get(META) if isinstance(raw, dict) else None
    dataset_meta = meta.get(DATASET_META) if isinstance(meta, dict) else None
    if not isinstance(dataset_meta, dict) or dataset_meta.get(CLASSES) is None:
        return RecordedClasses()
    names = dataset_meta[CLASSES]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return RecordedClasses(
            line=f"{WHERE}.{CLASSES} is not a list of class names "
            f"({type(names).__name__}); class names not recorded"
        )
    head = state.get(HEAD_WEIGHT)
    if head is None:
        return RecordedClasses(
            line=f"{WHERE} names {len(names)} classes but the checkpoint has no head; "
            "class names not recorded"
        )
    if len(names) != head.shape[0]:
        return RecordedClasses(
            line=f"{WHERE} has {len(names)} class names but the head has {head.shape[0]} "
            "classes; class names not recorded (give vswin-predict --labels)"
        )
    size = len(json.dumps(list(names)).encode("utf-8"))
    if size > MAX_RECORDED:
        return RecordedClasses(
            line=f"{WHERE}'s {len(names)} class names take {size} bytes, more than a weights "
            f"file records ({MAX_RECORDED}); class names not recorded (give vswin-predict --labels)"
        )
    return RecordedClasses(tuple(names), f"class names: {len(names)} from {WHERE}")
