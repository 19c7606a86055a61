"""Output files that are either complete or absent.

`check_destination` refuses a bad destination before any work is done. `atomic_write` hands out
a temporary path in the destination's folder, unique to the process and never mistaken for the
output (a hidden name holding ``.partial-<pid>-``), and moves it into place only when the block
succeeds: a run killed at any moment, even by SIGKILL, leaves at most such a temporary file,
which the next write to the same destination removes once its process is gone. Two runs racing
to one destination each write their own temporary file; the last rename wins, whole.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from videoswin_tf.weights_file import NATIVE_SUFFIX

PARTIAL = ".partial-"


class OutputError(Exception):
    """A destination that cannot be written; the message names it and what to do."""


def check_destination(path: str | os.PathLike, force: bool) -> Path:
    """``path`` as a `Path`, after checking that a file can be written there.

    Raises:
        OutputError: ``path`` is a directory, exists without ``force``, or its folder does not
            exist, is not a folder or is not writable (probed by creating a file in it).
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise OutputError(
            f"{path} is a directory; name the file to write, e.g. "
            f"{path / ('model' + NATIVE_SUFFIX)}"
        )
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"{path}: the folder {folder} {what}; create it or choose another --out")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(
            f"{path}: the folder {folder} is not writable ({error.strerror}); choose another --out"
        ) from error
    return path


def make_parent_folders(out: Path, option: str = "--out") -> None:
    """Create the folders ``out`` goes in before any work (an export writes its temporary
    file beside ``out``; ``synthesize`` its checkpoint).
    ``option``: the option the message tells to change.

    Raises:
        OutputError: a folder cannot be created (a file in its place, no permission).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{out}: cannot create the folder {out.parent} ({error.strerror}); choose another "
            f"{option}"
        ) from None


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on leaving the block without an exception, move
    it to ``path`` in one rename (after syncing it to disk); on an exception, delete it.
    Temporary files of processes that no longer run are removed first."""
    remove_stale_partials(path)
    temporary = path.with_name(
        f".{path.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}{_suffix(path)}"
    )
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete the temporary files `atomic_write` left for ``path`` in processes that are gone
    (killed ones); those of live processes are kept. Returns what was deleted."""
    pattern = re.compile(re.escape(f".{path.name}{PARTIAL}") + r"(\d+)-[0-9a-f]+")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}{PARTIAL}*"):
        match = pattern.match(candidate.name)
        if match and not _running(int(match[1])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _suffix(path: Path) -> str:
    # Keras picks the format from the name, so temporaries keep the weights suffix
    return NATIVE_SUFFIX if path.name.endswith(NATIVE_SUFFIX) else path.suffix


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
