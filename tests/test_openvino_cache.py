"""The OpenVINO IR cache's bound (`videoswin_tf.openvino_cache`), with small entries written by
a stand-in for the IR writer: the most recently used entries are kept, and an entry another
process is reading, or one being written, is never removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from videoswin_tf import inference, openvino_cache


def write(text: str):
    """A stand-in for the IR writer: ``model.xml`` holding ``text`` and a ``model.bin``."""

    def writer(folder):
        (folder / "model.xml").write_text(text)
        (folder / "model.bin").write_bytes(b"\0" * 16)

    return writer


def use(cache, key: str, at: float | None = None) -> None:
    """Use entry ``key`` as the engine does (write it if absent, compile: a blob written into
    its compiled folder); ``at`` sets its time of use afterwards, for a fixed order."""
    with openvino_cache.cached_ir(cache, key, write(key)) as entry:
        assert entry.xml.read_text() == key
        entry.compiled.mkdir(parents=True, exist_ok=True)
        (entry.compiled / "blob").write_bytes(b"\1" * 8)
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


def test_without_flock_entries_are_used_and_never_removed(tmp_path, monkeypatch):
    """Where fcntl does not exist (Windows) no process can tell an entry in use: none goes."""
    monkeypatch.setattr(openvino_cache, "_fcntl", lambda: None)
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, "1")
    for key in ("a", "b", "c"):
        use(tmp_path, key)
    assert kept(tmp_path) == ["a", "b", "c"]
    assert openvino_cache.evict(tmp_path, keep=1) == []
