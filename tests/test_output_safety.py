"""The output file is complete or absent: bad destinations refused before any work, SIGKILL at
any phase leaving nothing at the destination, racing conversions leaving one loadable file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SMALL_SPEC

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.outputs.atomic import PARTIAL, atomic_write, remove_stale_partials
from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

CONVERT = str(Path(sys.executable).with_name("vswin-convert"))
RUN_LIMIT_S = 120


@pytest.fixture(scope="module")
def pth(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / "small.pth"
    save_checkpoint(make_checkpoint(SMALL_SPEC, layout="authors"), path)
    return path


def partials(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if PARTIAL in p.name)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def start(pth: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [CONVERT, "--pth", str(pth), "--out", str(out), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_loadable(path: Path) -> None:
    model = build_keras_model(SMALL_SPEC)
    model.load_weights(str(path))


@pytest.mark.parametrize(
    "case, message",
    [
        ("directory", "is a directory; name the file to write"),
        ("missing folder", "/nowhere does not exist; create it or choose another --out"),
        ("file as folder", "is not a folder; create it or choose another --out"),
        ("unwritable folder", "is not writable"),
    ],
)
def test_bad_out_is_one_line_before_the_checkpoint_is_read(tmp_path, pth, case, message):
    destinations = {
        "directory": tmp_path / "dir.weights.h5",
        "missing folder": tmp_path / "nowhere" / "x.weights.h5",
        "file as folder": pth / "x.weights.h5",
        # root may write anywhere on a normal filesystem, but nobody creates files in /proc
        "unwritable folder": Path("/proc/x.weights.h5")
        if os.geteuid() == 0
        else tmp_path / "locked" / "x.weights.h5",
    }
    out = destinations[case]
    if case == "directory":
        out.mkdir()
    if case == "unwritable folder" and os.geteuid() != 0:
        out.parent.mkdir(mode=0o500)
    result = CliRunner().invoke(main, ["--pth", str(pth), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output  # one line, no [load] phase
    assert result.output.startswith("error: ") and message in result.output


@pytest.mark.parametrize(
    "phase",
    [
        pytest.param("load", marks=pytest.mark.slow),
        pytest.param("build", marks=pytest.mark.slow),
        "write",
        "parity",
    ],
)
def test_sigkill_at_any_phase_leaves_nothing_at_the_destination(tmp_path, pth, phase):
    out = tmp_path / "small.weights.h5"
    process = start(pth, out)
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.startswith(f"[{phase}]"):
                break
        assert seen and seen[-1].startswith(f"[{phase}]"), "".join(seen)
        if phase == "write":  # kill while the file is being written or just after
            deadline = time.monotonic() + RUN_LIMIT_S
            while not partials(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert partials(tmp_path), "".join(seen)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(RUN_LIMIT_S)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    assert not (tmp_path / "small.parity.json").exists()
    left = partials(tmp_path)
    assert all(p.name.startswith(".small.") for p in left), left  # hidden, never the output
    assert remove_stale_partials(out) + remove_stale_partials(
        tmp_path / "small.parity.json"
    ) == list(left)
    assert partials(tmp_path) == []


def test_racing_conversions_leave_one_loadable_file(tmp_path, pth):
    out = tmp_path / "small.weights.h5"
    stale = tmp_path / f".small.weights.h5{PARTIAL}{dead_pid()}-0badf00d.weights.h5"
    stale.write_bytes(b"half a file from a killed run")
    racers = [start(pth, out) for _ in range(2)]
    outputs = [racer.communicate(timeout=RUN_LIMIT_S)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert all("PASS" in output for output in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.parity.json", "small.weights.h5"]
    assert_loadable(out)


def test_stale_partials_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "a.weights.h5"
    dead = tmp_path / f".a.weights.h5{PARTIAL}{dead_pid()}-00000000.weights.h5"
    live = tmp_path / f".a.weights.h5{PARTIAL}{os.getpid()}-11111111.weights.h5"
    other = tmp_path / f".b.weights.h5{PARTIAL}{dead_pid()}-22222222.weights.h5"
    for path in (dead, live, other):
        path.write_bytes(b"x")
    assert remove_stale_partials(out) == [dead]
    assert sorted(partials(tmp_path)) == sorted([live, other])


def test_atomic_write_moves_on_success_and_deletes_on_error(tmp_path):
    out = tmp_path / "a.weights.h5"
    with atomic_write(out) as temporary:
        assert temporary.parent == tmp_path and temporary.name.endswith(".weights.h5")
        assert temporary.name.startswith(".a.weights.h5.partial-")
        temporary.write_bytes(b"whole")
    assert out.read_bytes() == b"whole"
    with pytest.raises(RuntimeError), atomic_write(out) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError
    assert out.read_bytes() == b"whole"
    assert partials(tmp_path) == []


@pytest.mark.parametrize(
    "option, target, folder, why",
    [
        ("--out", "sources/x.pth", "sources", "File exists"),
        ("--to", "sources/new", "sources/new", "Not a directory"),
    ],
)
def test_synthesize_under_a_file_is_one_line(tmp_path, option, target, folder, why):
    """``synthesize`` into a folder that cannot be made once ended in a FileExistsError
    traceback; it is the same one line as export's, naming the option to change."""
    (tmp_path / "sources").write_text("a file where the folder goes")
    target = tmp_path / target
    written = (
        target if option == "--out" else target / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    )
    result = CliRunner().invoke(main, ["synthesize", "--config", "swin_t_k400", option, target])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"error: {written}: cannot create the folder {tmp_path / folder} ({why}); choose "
        f"another {option}"
    )
