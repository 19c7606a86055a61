"""Rewriting the members of a ``torch.save`` zip archive, for tests that need a file torch itself
would not write (numpy 1 module names, a lying header, a missing member)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path


def members(path: Path) -> list[tuple[str, bytes]]:
    """``(name, data)`` of every member, in archive order."""
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(path: Path, entries: list[tuple[str, bytes]]) -> None:
    """A fresh stored (uncompressed) archive of ``entries``, as torch writes them."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            archive.writestr(name, data)


def rewrite_pickle(path: Path, edit: Callable[[bytes], bytes]) -> None:
    """Apply ``edit`` to the archive's ``data.pkl`` in place, every other member kept."""
    entries = members(path)
    write_members(
        path, [(name, edit(data) if name.endswith("/data.pkl") else data) for name, data in entries]
    )
