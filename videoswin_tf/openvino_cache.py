"""The folder ``$VSWIN_OPENVINO_CACHE`` names: OpenVINO IR kept across processes, bounded to
the most recently used entries.

An entry is one net and clip shape (its ``key``, `videoswin_tf.inference.ir_key`):
``DIR/ir/<key>/`` holds the IR (``model.xml``, ``model.bin``), ``DIR/compiled/<key>/`` the blob
OpenVINO compiles from it (its ``CACHE_DIR`` for that IR). An IR folder is written into a
hidden folder and renamed, so it is complete or absent.

The bound: after using an entry, a process removes all but the ``$VSWIN_OPENVINO_CACHE_ENTRIES``
(default `DEFAULT_ENTRIES`) most recently used ones (use: the IR folder's modification time,
set on each use). Safe with several processes on one folder (POSIX ``flock``): a process
holds a shared lock on the IR folder while it reads and compiles the entry; an entry is removed
only under an exclusive lock taken without waiting, so one being read is skipped, and one
being written is still a hidden folder, never a candidate. A removed entry is first renamed to
a hidden name: a process that opened it just before sees it gone and writes it afresh. Where
``fcntl`` does not exist (Windows) nothing is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ENTRIES_ENV = "VSWIN_OPENVINO_CACHE_ENTRIES"
# Swin-T's entries are 0.4 GB (IR and blob, for one clip or three; README, Engines and
# precision): four hold the full and the last, smaller batch's shapes of two models.
DEFAULT_ENTRIES = 4
# The file whose presence marks an IR folder complete.
IR_XML = "model.xml"
# A hidden folder this old is a write or removal a killed process left: removed too.
STALE_S = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached IR in use.

    Attributes:
        xml: the IR's ``model.xml`` (``model.bin`` beside it).
        compiled: the folder for OpenVINO's compiled blob of it (``CACHE_DIR``).
    """

    xml: Path
    compiled: Path


def max_entries() -> int:
    """How many entries the cache keeps: ``$VSWIN_OPENVINO_CACHE_ENTRIES``, else
    `DEFAULT_ENTRIES`.

    Raises:
        ValueError: the variable is set to anything but a positive integer (one line).
    """
    value = os.environ.get(ENTRIES_ENV, "").strip()
    if not value:
        return DEFAULT_ENTRIES
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{ENTRIES_ENV}={value} is not a positive whole number of cache entries (IR and "
            f"compiled blob); set it to e.g. {DEFAULT_ENTRIES}, or unset it"
        )
    return int(value)


@contextlib.contextmanager
def cached_ir(cache: str | os.PathLike, key: str, write: Callable[[Path], None]) -> Iterator[Entry]:
    """The entry ``key`` of the cache folder ``cache``, written by ``write`` (given an empty
    folder to write ``model.xml`` and ``model.bin`` into) when absent, held under a shared lock
    while the caller compiles it; when the caller is done, the least recently used entries
    beyond `max_entries` are removed.

    Raises:
        ValueError: a bad ``$VSWIN_OPENVINO_CACHE_ENTRIES`` (`max_entries`).
        OSError: from ``write`` or the file system; nothing half-written is left.
    """
    limit = max_entries()
    root = Path(cache)
    folder = root / "ir" / key
    entry = Entry(folder / IR_XML, root / "compiled" / key)
    if _fcntl() is None:  # no flock (Windows): used unlocked, and nothing is ever removed
        if not entry.xml.is_file():
            write_atomically(folder, write)
        yield entry
        return
    lock = _use(folder, write)
    try:
        yield entry
    finally:
        os.close(lock)  # releases the shared lock
    evict(root, limit)


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a hidden folder beside ``folder``, renamed to ``folder`` once done, so
    ``folder`` is complete or absent; another process that wrote it first wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(partial)
        os.rename(partial, folder)
    except OSError:
        if not (folder / IR_XML).is_file():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def evict(cache: str | os.PathLike, keep: int) -> list[str]:
    """Remove the entries of ``cache`` beyond the ``keep`` most recently used, skipping any
    another process holds (reading or compiling it); hidden folders (being written or
    removed) are never candidates, unless older than `STALE_S` (left by a killed process).
    Returns the keys removed, oldest first."""
    fcntl = _fcntl()
    if fcntl is None:  # no flock: removing could pull an entry from under a reader
        return []
    ir = Path(cache) / "ir"
    folders = _folders(ir)
    for folder in folders:
        if folder.name.startswith(".") and _mtime(folder) < time.time() - STALE_S:
            shutil.rmtree(folder, ignore_errors=True)
    entries = sorted((p for p in folders if not p.name.startswith(".")), key=_mtime, reverse=True)
    removed = []
    for folder in reversed(entries[keep:]):
        try:
            handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # another process removed it
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # in use
            os.close(handle)
            continue
        try:
            doomed = ir / f".removed.{folder.name}.{os.getpid()}"
            os.rename(folder, doomed)
            shutil.rmtree(Path(cache) / "compiled" / folder.name, ignore_errors=True)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(folder.name)
        except FileNotFoundError:
            pass
        finally:
            os.close(handle)
    return removed


def _use(folder: Path, write: Callable[[Path], None]) -> int:
    """An open handle of ``folder`` holding a shared lock, ``folder`` written first when
    absent (again if it was removed between the check and the lock); marks it used."""
    fcntl = _fcntl()
    while True:
        if not (folder / IR_XML).is_file():
            write_atomically(folder, write)
        try:
            handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            here = os.path.samestat(os.fstat(handle), os.stat(folder))
        except FileNotFoundError:
            here = False
        if here and (folder / IR_XML).is_file():
            os.utime(folder)
            return handle
        os.close(handle)


def _folders(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone: neither stale nor a candidate worth a lock


def _fcntl():
    """The ``fcntl`` module (POSIX ``flock``), or None where it does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl
