"""The OpenVINO IR cache's bound (`videoswin_tf.openvino_cache`), with small entries written by
a stand-in for the IR writer: the most recently used entries are kept, and an entry another
process is reading, or one being written, is never removed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from videoswin_tf import inference, openvino_cache


def write(text: str):
    """A stand-in for the IR writer: ``model.xml`` holding ``text`` and a ``model.bin``."""

    def writer(folder):
        (folder / "model.xml").write_text(text)
        (folder / "model.bin").write_bytes(b"\0" * 16)

    return writer


def use(cache, key: str, at: float | None = None) -> None:
    """Use entry ``key`` as the engine does (write it if absent, compile: a read-only blob
    written into its compiled folder); ``at`` sets its time of use afterwards, for a fixed order."""
    with openvino_cache.cached_ir(cache, key, write(key)) as entry:
        assert entry.xml.read_text() == key
        entry.compiled.mkdir(parents=True, exist_ok=True)
        (entry.compiled / "blob").write_bytes(b"\1" * 8)
        (entry.compiled / "blob").chmod(0o440)  # as OpenVINO writes its blobs
    if at is not None:
        os.utime(cache / "ir" / key, (at, at))


def kept(cache) -> list[str]:
    return sorted(p.name for p in (cache / "ir").iterdir())


def test_the_most_recently_used_entries_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, "3")
    start = time.time() - 100
    for number, key in enumerate(["a", "b", "c"]):
        use(tmp_path, key, at=start + number)
    use(tmp_path, "a", at=start + 10)  # a used again: b is now the oldest
    use(tmp_path, "d", at=start + 11)
    assert kept(tmp_path) == ["a", "c", "d"]
    assert sorted(p.name for p in (tmp_path / "compiled").iterdir()) == ["a", "c", "d"]
    assert openvino_cache.evict(tmp_path, keep=1) == ["c", "a"]  # oldest first
    assert kept(tmp_path) == ["d"]
    assert sorted(p.name for p in (tmp_path / "ir" / "d").iterdir()) == ["model.bin", "model.xml"]


def test_an_entry_in_use_or_being_written_is_never_removed(tmp_path):
    """Another process holds a shared lock on entry "a" (as while it compiles it) and another
    is writing entry "w" (a hidden folder): evicting down to nothing removes only "b"; once the
    reader is done, "a" goes too."""
    start = time.time() - 100
    use(tmp_path, "a", at=start)
    use(tmp_path, "b", at=start + 1)
    writing = tmp_path / "ir" / ".w.x1y2"
    writing.mkdir()
    (writing / "model.bin").write_bytes(b"half")
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; handle = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY); "
            "fcntl.flock(handle, fcntl.LOCK_SH); print('locked', flush=True); sys.stdin.read()",
            str(tmp_path / "ir" / "a"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline() == "locked\n"
        assert openvino_cache.evict(tmp_path, keep=0) == ["b"]
        assert kept(tmp_path) == [".w.x1y2", "a"]
    finally:
        reader.stdin.close()
        reader.wait()
    assert openvino_cache.evict(tmp_path, keep=0) == ["a"]
    assert kept(tmp_path) == [".w.x1y2"]


def test_a_hidden_folder_a_killed_process_left_is_removed_after_a_day(tmp_path):
    use(tmp_path, "a")
    stale, fresh = tmp_path / "ir" / ".b.old", tmp_path / "ir" / ".c.new"
    for folder in (stale, fresh):
        folder.mkdir()
    old = time.time() - openvino_cache.STALE_S - 60
    os.utime(stale, (old, old))
    assert openvino_cache.evict(tmp_path, keep=4) == []
    assert kept(tmp_path) == [".c.new", "a"]


def test_an_entry_removed_under_a_reader_is_written_again(tmp_path, monkeypatch):
    """A process that finds the entry gone after opening it (another removed it between its
    open and its lock) writes it afresh and uses the new one."""
    use(tmp_path, "a")
    removed = []
    original = os.open

    def open_then_lose(path, flags, *args, **kwargs):
        handle = original(path, flags, *args, **kwargs)
        if str(path).endswith(os.sep + "a") and not removed:
            removed.append(None)  # before evict, whose own open comes here too
            removed[0] = openvino_cache.evict(tmp_path, keep=0)
        return handle

    monkeypatch.setattr(os, "open", open_then_lose)
    with openvino_cache.cached_ir(tmp_path, "a", write("again")) as entry:
        assert entry.xml.read_text() == "again"
    assert removed == [["a"]]
    assert kept(tmp_path) == ["a"]


@pytest.mark.parametrize("value", ["0", "-2", "four", "1.5"])
def test_a_bad_bound_is_one_line_before_any_model(tmp_path, monkeypatch, value):
    monkeypatch.setenv(inference.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, value)
    with pytest.raises(inference.CacheFolderError) as caught:
        inference.check_cache_folder()
    assert str(caught.value) == (
        f"VSWIN_OPENVINO_CACHE_ENTRIES={value} is not a positive whole number of cache entries "
        "(IR and compiled blob); set it to e.g. 4, or unset it"
    )


def test_the_default_bound(monkeypatch):
    monkeypatch.delenv(openvino_cache.ENTRIES_ENV, raising=False)
    assert openvino_cache.max_entries() == openvino_cache.DEFAULT_ENTRIES == 4
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, "12")
    assert openvino_cache.max_entries() == 12


class Windows:
    """Windows' rules where the cache's removal meets them, on Linux: a folder with a file open
    in it cannot be renamed, and an open or read-only file cannot be deleted
    (``PermissionError`` each). "Open" is open in this process (``/proc/self/fd``), which is
    where the simulated reader runs."""

    def __init__(self, monkeypatch):
        self.rename, self.unlink = os.rename, os.unlink
        monkeypatch.setattr(openvino_cache, "_fcntl", lambda: None)  # no flock
        monkeypatch.setattr(os, "rename", self.guarded_rename)
        monkeypatch.setattr(os, "unlink", self.guarded_unlink)

    @staticmethod
    def open_files() -> set[str]:
        fds = Path("/proc/self/fd")
        return {os.readlink(fds / fd) for fd in os.listdir(fds) if (fds / fd).is_symlink()}

    def guarded_rename(self, source, target, **kwargs):
        inside = f"{os.path.realpath(source)}{os.sep}"
        if any(path.startswith(inside) for path in self.open_files()):
            raise PermissionError(13, "a file in the folder is open", str(source))
        return self.rename(source, target, **kwargs)

    def guarded_unlink(self, path, *, dir_fd=None):
        mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
        real = os.path.realpath(os.path.join(f"/proc/self/fd/{dir_fd}", path) if dir_fd else path)
        if not mode & stat.S_IWRITE or real in self.open_files():
            raise PermissionError(13, "read-only or open", str(path))
        return self.unlink(path, dir_fd=dir_fd)


def test_without_flock_an_entry_in_use_is_kept_and_the_others_removed(tmp_path, monkeypatch):
    """Where fcntl does not exist (Windows) the reader holds model.xml open instead of a lock:
    the removal's rename fails on it, so the entry is skipped; the others go, their read-only
    blobs with them; once the reader is done, its entry goes too."""
    Windows(monkeypatch)
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, "2")
    start = time.time() - 100
    for number, key in enumerate(["a", "b", "c"]):
        use(tmp_path, key, at=start + number)
    assert kept(tmp_path) == ["b", "c"]
    assert sorted(p.name for p in (tmp_path / "compiled").iterdir()) == ["b", "c"]
    with openvino_cache.cached_ir(tmp_path, "b", write("b")) as entry:
        assert str(entry.xml) in Windows.open_files()
        os.utime(tmp_path / "ir" / "b", (start, start))  # b is the oldest, and in use
        assert openvino_cache.evict(tmp_path, keep=0) == ["c"]
        assert kept(tmp_path) == ["b"]
    assert str(entry.xml) not in Windows.open_files()
    assert openvino_cache.evict(tmp_path, keep=0) == ["b"]
    assert kept(tmp_path) == [] and list((tmp_path / "compiled").iterdir()) == []


def test_a_blob_held_open_on_windows_goes_with_a_later_eviction(tmp_path, monkeypatch):
    """An entry's blob open in another process (Windows: not deletable) outlives its IR's
    removal; the next eviction removes it once it is closed."""
    Windows(monkeypatch)
    use(tmp_path, "a")
    with open(tmp_path / "compiled" / "a" / "blob", "rb"):
        assert openvino_cache.evict(tmp_path, keep=0) == ["a"]
        assert kept(tmp_path) == [] and os.listdir(tmp_path / "compiled" / "a") == ["blob"]
    assert openvino_cache.evict(tmp_path, keep=0) == []
    assert list((tmp_path / "compiled").iterdir()) == []


@pytest.mark.parametrize("flock", [True, False])
def test_the_blobs_an_older_version_left_in_the_folder_itself_are_removed(
    tmp_path, monkeypatch, flock
):
    """Versions before ir/ and compiled/ gave OpenVINO the cache folder itself as its
    CACHE_DIR: the blob OpenVINO writes there (read-only, named by its hash) goes with the next
    eviction, on Windows (simulated) too; files of other names or contents, and folders, stay."""
    openvino = pytest.importorskip("openvino")
    if not flock:
        Windows(monkeypatch)
    clip = openvino.opset13.parameter([1, 4], np.float32)
    inference.compile_openvino(
        openvino.Model([openvino.opset13.relu(clip)], [clip]), cache_dir=tmp_path
    )
    (blob,) = tmp_path.iterdir()
    assert openvino_cache.OLD_BLOB_NAME.fullmatch(blob.name)
    assert not blob.stat().st_mode & stat.S_IWRITE
    others = {"123.blob": b"not OpenVINO's", "model.blob": blob.read_bytes(), "notes.txt": b"x"}
    for name, content in others.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "456.blob").mkdir()
    assert openvino_cache.old_blobs(tmp_path) == [blob]
    use(tmp_path, "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "123.blob",
        "456.blob",
        "compiled",
        "ir",
        "model.blob",
        "notes.txt",
    ]
