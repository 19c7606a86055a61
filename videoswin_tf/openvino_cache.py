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
a hidden name: a process that opened it just before sees it gone and writes it afresh.

Where ``fcntl`` does not exist (Windows) a process holds the entry's ``model.xml`` open instead
of a lock while it reads and compiles it, and the rename that starts a removal is the test: on
Windows a folder cannot be renamed while a file in it is open (``PermissionError``), so an
entry in use is skipped as under ``flock``. That rule is Windows' own; it was not run on Windows
here, only simulated (tests/test_openvino_cache.py). OpenVINO writes its blobs read-only, which
Windows will not delete, so files are made writable before removal; a blob another process
holds open there stays, and a later eviction removes it once its IR is gone.

Versions before this layout gave OpenVINO ``DIR`` itself as its ``CACHE_DIR``: their blobs
(``DIR/<digits>.blob``, each starting with OpenVINO's ``<compiled_blob`` header) are removed
with the first eviction; any other file in ``DIR`` is never touched. (Their IRs were in
``DIR/ir/<key>/`` already, and are removed as entries.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ENTRIES_ENV = "VSWIN_OPENVINO_CACHE_ENTRIES"
# Swin-T's entries are 0.2 GB (a 199 MB IR and a weightless blob of a few MB, one clip's graph
# whatever the batch; README, Engines and precision): four hold two clip sizes of two models.
DEFAULT_ENTRIES = 4
# The file whose presence marks an IR folder complete.
IR_XML = "model.xml"
# A hidden folder this old is a write or removal a killed process left: removed too.
STALE_S = 24 * 3600
# What earlier versions left in the cache folder itself (OpenVINO's CACHE_DIR then): OpenVINO
# names a blob after its hash in decimal, and starts it with an XML header naming its version.
OLD_BLOB_NAME = re.compile(r"[0-9]+\.blob")
OLD_BLOB_HEADER = b"<compiled_blob"
OLD_BLOB_HEAD_BYTES = 64  # where the header is looked for


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
    folder to write ``model.xml`` and ``model.bin`` into) when absent, held (a shared lock, or
    without ``fcntl`` its ``model.xml`` open) while the caller compiles it; when the caller is
    done, the least recently used entries beyond `max_entries` are removed (`evict`).

    Raises:
        ValueError: a bad ``$VSWIN_OPENVINO_CACHE_ENTRIES`` (`max_entries`).
        OSError: from ``write`` or the file system; nothing half-written is left.
    """
    limit = max_entries()
    root = Path(cache)
    folder = root / "ir" / key
    release = _use(folder, write)
    try:
        yield Entry(folder / IR_XML, root / "compiled" / key)
    finally:
        release()
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
    A compiled blob whose IR is gone (a removal that could not delete it) goes too, and so do
    the blobs earlier versions left in ``cache`` itself (`old_blobs`). Returns the keys
    removed, oldest first."""
    for blob in old_blobs(cache):
        _delete(blob)
    ir = Path(cache) / "ir"
    folders = _folders(ir)
    for folder in folders:
        if folder.name.startswith(".") and _mtime(folder) < time.time() - STALE_S:
            _delete(folder)
    for folder in _folders(Path(cache) / "compiled"):
        if not (ir / folder.name).exists():  # its IR removed, the blob left (open on Windows)
            _delete(folder)
    entries = sorted((p for p in folders if not p.name.startswith(".")), key=_mtime, reverse=True)
    removed = []
    for folder in reversed(entries[keep:]):
        with _unused(folder) as free:
            if not free:
                continue
            doomed = ir / f".removed.{folder.name}.{os.getpid()}"
            try:
                os.rename(folder, doomed)  # Windows: PermissionError while a file in it is open
            except (FileNotFoundError, PermissionError):  # removed by another process; in use
                continue
            _delete(Path(cache) / "compiled" / folder.name)
            _delete(doomed)
            removed.append(folder.name)
    return removed


def old_blobs(cache: str | os.PathLike) -> list[Path]:
    """The compiled blobs versions before ``DIR/compiled/<key>/`` left in the cache folder
    ``cache`` itself: files named `OLD_BLOB_NAME` that start with OpenVINO's blob header."""
    try:
        files = [p for p in Path(cache).iterdir() if OLD_BLOB_NAME.fullmatch(p.name)]
    except FileNotFoundError:
        return []
    found = []
    for path in files:
        try:
            with open(path, "rb") as file:
                if OLD_BLOB_HEADER in file.read(OLD_BLOB_HEAD_BYTES):
                    found.append(path)
        except OSError:  # gone, a folder, or unreadable: not one of them
            continue
    return found


@contextlib.contextmanager
def _unused(folder: Path) -> Iterator[bool]:
    """Whether no process uses the entry ``folder``, held so while the body removes it: with
    ``flock``, an exclusive lock taken without waiting; without, True (the removal's rename
    is the test: Windows refuses it while a file in the folder is open)."""
    fcntl = _fcntl()
    if fcntl is None:
        yield True
        return
    try:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:  # another process removed it
        yield False
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # in use
        os.close(handle)
        yield False
        return
    try:
        yield True
    finally:
        os.close(handle)


def _delete(path: Path) -> None:
    """Remove the file or folder ``path`` as far as it goes: read-only files (OpenVINO's blobs)
    made writable first, since Windows deletes none; a file another process holds open there,
    or one already gone, is left."""
    files = [path] if not path.is_dir() else [p for p in path.rglob("*") if not p.is_dir()]
    for file in files:
        with contextlib.suppress(OSError):
            mode = file.stat().st_mode
            if not mode & stat.S_IWRITE:
                file.chmod(mode | stat.S_IWRITE)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _use(folder: Path, write: Callable[[Path], None]) -> Callable[[], None]:
    """Hold the entry ``folder``, written first when absent (again if it was removed between
    the check and the hold), and mark it used; returns what releases it. The hold: a shared
    ``flock`` on the folder, or without ``fcntl`` its ``model.xml`` kept open."""
    fcntl = _fcntl()
    while True:
        if not (folder / IR_XML).is_file():
            write_atomically(folder, write)
        if fcntl is None:
            try:
                xml = open(folder / IR_XML, "rb")  # held open until released
            except FileNotFoundError:
                continue
            os.utime(folder)
            return xml.close
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
            return functools.partial(os.close, handle)
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
