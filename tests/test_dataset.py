"""Dataset runs: Parquet rows equal to the one-video API, list files, error rows, a run
killed with SIGKILL then rerun, Ctrl-C, and the decoding workers' end."""

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dataset_model import LABELS, PIPELINE, SMALL_CONFIG, AfterRows, SmallWeights, ctrl_c
from video_files import encode, encode_audio

from videoswin_tf.video import predict_video, snippet_features
from videoswin_tf.video.dataset import (
    COLUMNS,
    DatasetInterrupted,
    DatasetItem,
    DatasetSettings,
    ShardWriter,
    predict_dataset,
    read_results,
    read_video_list,
    schema,
)
from videoswin_tf.video.snippets import SnippetSpec

SETTINGS = DatasetSettings(config=PIPELINE, labels=LABELS, top=3, workers=1, shard_size=2)


@pytest.fixture(scope="module")
def model(small_weights):
    return SmallWeights(str(small_weights))()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Five short videos of different lengths and sizes."""
    folder = tmp_path_factory.mktemp("videos")
    sizes = [(12, 48, 36), (20, 40, 40), (9, 36, 48), (30, 64, 36), (15, 48, 36)]
    return [encode(folder / f"v{i}.mp4", *size) for i, size in enumerate(sizes)]


def test_rows_equal_the_one_video_api(model, videos, tmp_path):
    settings = DatasetSettings(**{**SETTINGS.__dict__, "snippets": SnippetSpec(4, 3)})
    summary = predict_dataset(lambda: model, videos, tmp_path / "out", settings, progress=False)
    assert (summary.written, summary.skipped, summary.failed) == (5, 0, 0)
    shards = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert len(shards) == 3  # 2 + 2 + 1 rows
    table = read_results(tmp_path / "out")
    assert table.schema.names == list(COLUMNS)
    rows = {row["video"]: row for row in table.to_pylist()}
    for path in videos:
        row = rows[str(path)]
        # the engine dataset runs use (the default would be OpenVINO where it is installed)
        one = predict_video(
            model, path, PIPELINE, labels=LABELS, top=3, features=True, engine="tensorflow"
        )
        along = snippet_features(model, path, SnippetSpec(4, 3), PIPELINE, batch_size=4)
        assert row["error"] is None and row["frames"] == one.num_frames
        assert row["fps"] == 25.0 and row["duration"] == one.num_frames / 25
        assert row["views"] == "1x1" and row["label"] is None
        assert row["top_labels"] == [entry.label for entry in one.top]
        assert row["top_indices"] == [entry.index for entry in one.top]
        np.testing.assert_allclose(row["probabilities"], one.probabilities, atol=1e-6)
        np.testing.assert_allclose(row["feature"], one.features, atol=1e-6)
        np.testing.assert_allclose(row["snippet_features"], along.features, atol=1e-6)
        np.testing.assert_allclose(row["snippet_times"], along.times, atol=0)


def test_a_rerun_skips_complete_videos_and_redoes_failed_ones(model, videos, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "later.mp4"
    items = [*videos[:2], missing]
    first = predict_dataset(lambda: model, items, out, SETTINGS, progress=False)
    assert (first.written, first.skipped, first.failed) == (3, 0, 1)
    encode(missing, 10, 48, 36)  # the missing video appears
    second = predict_dataset(lambda: model, items, out, SETTINGS, progress=False)
    assert (second.written, second.skipped, second.failed) == (1, 2, 0)
    results = read_results(out).to_pylist()
    assert sorted(row["video"] for row in results) == sorted(str(p) for p in items)
    assert all(row["error"] is None for row in results)


def test_two_spellings_of_one_video_give_one_row(model, videos, tmp_path, monkeypatch):
    """A video listed as its path, another spelling of it and a symbolic link to it runs once:
    one row, under the first spelling with its label; the CLI de-duplicates by the same rule."""
    from videoswin_tf.cli.predict import _dataset_items

    (tmp_path / "link.mp4").symlink_to(videos[0])
    monkeypatch.chdir(videos[0].parent)
    spellings = [
        DatasetItem(videos[0].name, "first"),
        DatasetItem(f"../{videos[0].parent.name}/./{videos[0].name}", "second"),
        DatasetItem(str(tmp_path / "link.mp4")),
        DatasetItem(str(videos[1])),
    ]
    in_process = DatasetSettings(**{**SETTINGS.__dict__, "workers": 0})
    summary = predict_dataset(
        lambda: model, spellings, tmp_path / "out", in_process, progress=False
    )
    assert (summary.written, summary.skipped, summary.failed) == (2, 0, 0)
    rows = read_results(tmp_path / "out").to_pylist()
    assert sorted((row["video"], row["label"]) for row in rows) == [
        (str(videos[1]), None),
        (videos[0].name, "first"),
    ]
    listed = tmp_path / "list.jsonl"  # absolute paths: a list's relative ones are from its folder
    dotted = f"{videos[0].parent}/../{videos[0].parent.name}/./{videos[0].name}"
    rows = [{"video": str(videos[0]), "label": "first"}, {"video": dotted, "label": "second"}]
    listed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    arguments = (str(listed), str(tmp_path / "link.mp4"), videos[1].name, videos[0].name)
    assert _dataset_items(arguments) == [
        DatasetItem(str(videos[0]), "first"),
        DatasetItem(videos[1].name),
    ]


def test_list_files(tmp_path):
    (tmp_path / "a.txt").write_text("# clips\nx.mp4\n\n/data/y.mp4\n")
    (tmp_path / "b.csv").write_text("video,label\nx.mp4,running\ny.mp4,\n")
    (tmp_path / "c.jsonl").write_text('{"video": "x.mp4", "label": 3}\n{"video": "y.mp4"}\n')
    (tmp_path / "d.csv").write_text("path,label\nx.mp4,running\n")
    assert read_video_list(tmp_path / "a.txt") == [
        DatasetItem(str(tmp_path / "x.mp4")),
        DatasetItem("/data/y.mp4"),
    ]
    assert read_video_list(tmp_path / "b.csv") == [
        DatasetItem(str(tmp_path / "x.mp4"), "running"),
        DatasetItem(str(tmp_path / "y.mp4")),
    ]
    assert read_video_list(tmp_path / "c.jsonl") == [
        DatasetItem(str(tmp_path / "x.mp4"), "3"),
        DatasetItem(str(tmp_path / "y.mp4")),
    ]
    with pytest.raises(ValueError) as header:  # the header is at fault, not the row below it
        read_video_list(tmp_path / "d.csv")
    assert str(header.value) == (
        f"{tmp_path / 'd.csv'}:1: the header has no video column (columns: path, label); the "
        "first line must be a header naming a video column, e.g. video,label"
    )
    (tmp_path / "e.csv").write_text("video,label\nx.mp4,running\n,walking\n")
    with pytest.raises(ValueError, match=r"e.csv:3: no video column; each row needs a video"):
        read_video_list(tmp_path / "e.csv")
    (tmp_path / "f.jsonl").write_text('{"video": "x.mp4"}\n{"path": "y.mp4"}\n')
    with pytest.raises(ValueError, match=r"f.jsonl:2: no video column; each row needs a video"):
        read_video_list(tmp_path / "f.jsonl")
    (tmp_path / "k.jsonl").write_text('{"video": "x.mp4"}\n[\n')  # a JSON array, not a list
    with pytest.raises(ValueError) as broken:
        read_video_list(tmp_path / "k.jsonl")
    assert str(broken.value) == (
        f"{tmp_path / 'k.jsonl'}:2: not valid JSON (Expecting value at column 2); a .jsonl list "
        'holds one JSON object a line, e.g. {"video": "clips/a.mp4", "label": "running"}'
    )
    (tmp_path / "l.jsonl").write_text('{"video": "x.mp4"}\n\n["y.mp4"]\n')
    with pytest.raises(ValueError) as array:
        read_video_list(tmp_path / "l.jsonl")
    assert str(array.value) == (
        f"{tmp_path / 'l.jsonl'}:3: JSON an array where an object is expected; a .jsonl list "
        'holds one JSON object a line, e.g. {"video": "clips/a.mp4", "label": "running"}'
    )
    (tmp_path / "g.csv").write_bytes("\ufeffvideo,label\nx.mp4,running\n".encode())  # Excel's
    assert read_video_list(tmp_path / "g.csv") == [DatasetItem(str(tmp_path / "x.mp4"), "running")]
    for name, text in [("h.txt", "# none yet\n"), ("i.csv", "video,label\n"), ("j.jsonl", "")]:
        (tmp_path / name).write_text(text)
        assert read_video_list(tmp_path / name) == []


def test_a_row_file_and_its_rename_reach_the_disk_before_the_next_step(tmp_path, monkeypatch):
    """A power loss keeps a row only if its bytes are flushed before the rename and the
    folder (which holds the new name) after it; a shard must be on the disk before its row
    files are removed."""
    steps = []
    fsync, replace, unlink = os.fsync, os.replace, Path.unlink

    def record_fsync(descriptor):
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def record_replace(source, target):
        steps.append(("replace", str(source), str(target)))
        replace(source, target)

    def record_unlink(path, missing_ok=False):
        if path.exists():
            steps.append(("unlink", str(path)))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    monkeypatch.setattr(Path, "unlink", record_unlink)
    writer = ShardWriter(tmp_path, shard_size=1)
    writer.add({"video": "a.mp4", "frames": 8})
    rows, row = tmp_path / ".rows", tmp_path / ".rows" / f"{writer.run}-00000-00000.parquet"
    shard = tmp_path / f"part-{writer.run}-00000.parquet"
    assert steps == [
        ("fsync", str(rows / f".{row.name}.partial")),
        ("replace", str(rows / f".{row.name}.partial"), str(row)),
        ("fsync", str(rows)),
        ("fsync", str(tmp_path / f".{shard.name}.partial")),
        ("replace", str(tmp_path / f".{shard.name}.partial"), str(shard)),
        ("fsync", str(tmp_path)),
        ("unlink", str(row)),
    ]
    assert read_results(tmp_path).to_pylist()[0]["video"] == "a.mp4"


def broken_list(folder: Path, good: Path) -> Path:
    """A .csv list: a good video, a missing one, a truncated one, an audio-only one."""
    truncated = folder / "truncated.mp4"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    encode_audio(folder / "audio.m4a")
    rows = [f"{good},walking", "missing.mp4,", "truncated.mp4,", "audio.m4a,talking"]
    (folder / "list.csv").write_text("video,label\n" + "\n".join(rows) + "\n")
    return folder / "list.csv"


def test_missing_truncated_and_audio_only_files_are_error_rows(model, videos, tmp_path):
    listed = read_video_list(broken_list(tmp_path, videos[0]))
    summary = predict_dataset(lambda: model, listed, tmp_path / "out", SETTINGS, progress=False)
    assert (summary.written, summary.failed) == (4, 3)
    rows = {Path(row["video"]).name: row for row in read_results(tmp_path / "out").to_pylist()}
    assert rows["v0.mp4"]["error"] is None and rows["v0.mp4"]["label"] == "walking"
    assert rows["missing.mp4"]["error"] == f"{tmp_path / 'missing.mp4'}: no such file"
    assert rows["truncated.mp4"]["error"].startswith(f"{tmp_path / 'truncated.mp4'}: ")
    assert rows["audio.m4a"]["error"] == (
        f"{tmp_path / 'audio.m4a'}: has no video stream (found audio)"
    )
    assert rows["audio.m4a"]["label"] == "talking" and rows["audio.m4a"]["frames"] is None


KILLED_RUN = """
import json, logging, os, sys
sys.path.insert(0, {tests!r})
from dataset_model import LABELS, PIPELINE, AfterRows, SmallWeights, hold
from videoswin_tf.video.dataset import DatasetSettings, predict_dataset

if __name__ == "__main__":  # the decoding workers are spawned: they import this file
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    if os.environ.get("HOLD_AFTER"):  # the run stops after its N-th row, for the kill to land
        logging.getLogger().addHandler(AfterRows(int(os.environ["HOLD_AFTER"]), hold))
    settings = DatasetSettings(config=PIPELINE, labels=LABELS, workers=1, shard_size=100)
    videos = {videos!r}
    summary = predict_dataset(SmallWeights({weights!r}), videos, {out!r}, settings, progress=False)
    print(json.dumps({{"written": summary.written, "skipped": summary.skipped}}))
"""


def written_videos(log: str) -> set[str]:
    """The videos whose row the run logged as written."""
    return {
        line.removesuffix(": row written") for line in log.splitlines() if "row written" in line
    }


def test_a_run_killed_with_sigkill_keeps_every_finished_video(small_weights, tmp_path):
    """Killed mid-shard (shards of 100 rows, 12 videos): every video logged as finished is kept,
    the rerun redoes only the others, and the end is one complete row per video in one shard."""
    videos = [str(encode(tmp_path / f"k{i}.mp4", 8 + i, 40, 32)) for i in range(12)]
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    tests = str(Path(__file__).parent)
    script.write_text(
        KILLED_RUN.format(tests=tests, videos=videos, weights=str(small_weights), out=str(out))
    )
    log = tmp_path / "killed.log"
    with log.open("w") as sink:
        run = subprocess.Popen(
            [sys.executable, "-u", str(script)],
            stdout=sink,
            start_new_session=True,
            env={**os.environ, "HOLD_AFTER": "3"},
        )
        deadline = time.monotonic() + 120
        while len(written_videos(log.read_text())) < 3:
            assert run.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGKILL)  # the run and its decoding workers
        run.wait()
    finished = written_videos(log.read_text())
    kept = {row["video"] for row in read_results(out).to_pylist() if row["error"] is None}
    assert not list(out.glob("part-*.parquet")), "the kill came after a shard: nothing tested"
    assert finished == kept and len(kept) == 3, (finished, kept)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    redone = written_videos(done.stdout)
    assert redone == set(videos) - kept  # nothing finished before the kill is run again
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "written": 12 - len(kept),
        "skipped": len(kept),
    }
    shards = list(out.glob("part-*.parquet"))
    assert len(shards) == 2  # the killed run's rows, gathered on the rerun; the rerun's own
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    assert sorted(row["video"] for row in rows) == sorted(videos)  # each exactly once
    assert all(row["error"] is None and len(row["feature"]) == 256 for row in rows)
    assert all(pq.read_schema(shard) == schema() for shard in shards)
    assert not list(out.rglob("*.partial")) and not list((out / ".rows").iterdir())


def test_cli_dataset_run_with_a_broken_list_exits_1(videos, tmp_path):
    """--out through the installed command, with Swin-T weights (the builder's initialisation)
    and 1x1 views: a row for every listed video, exit 1, the totals on stderr."""
    import videoswin_tf
    from videoswin_tf.presets import get_preset

    preset = get_preset("swin_t_k400")
    weights = tmp_path / "tiny.weights.h5"
    getattr(videoswin_tf, preset.builder)(**preset.model_kwargs()).save_weights(str(weights))
    listed = broken_list(tmp_path, videos[0])
    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "vswin-predict"), str(listed)]
    options = ["--weights", str(weights), "--config", "swin_t_k400", "--views", "1x1"]
    options += ["--engine", "tensorflow"]  # the engine is not what this test is about
    done = subprocess.run(
        [*command, *options, "--out", str(out), "--quiet", "--workers", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert re.fullmatch(
        rf"1 video written to {re.escape(str(out))}, 3 failed \(their rows hold the errors\), "
        r"0 already complete, in [0-9.]+ s",
        done.stderr.splitlines()[-1],
    )
    rows = read_results(out).to_pylist()
    assert sorted(row["error"] is None for row in rows) == [False, False, False, True]
    assert [len(row["probabilities"] or []) for row in rows if row["error"] is None] == [400]


NUMBERS = [str(index) for index in range(10)]


@pytest.fixture(scope="module")
def recorded(model, tmp_path_factory):
    """The small model's weights in a file that records its config, and its JSON config."""
    from videoswin_tf.weights_file import save_weights

    folder = tmp_path_factory.mktemp("recorded")
    save_weights(model, folder / "small.weights.h5")
    (folder / "small.json").write_text(json.dumps(SMALL_CONFIG))
    return folder / "small.weights.h5", folder / "small.json"


def cli_dataset_run(weights: Path, videos, out: Path, *options: str):
    """vswin-predict --out in this process; the result and the rows by video."""
    from click.testing import CliRunner

    from videoswin_tf.cli.predict import main

    arguments = [*map(str, videos), "--weights", str(weights), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, [*arguments, "--workers", "0", "--top", "3", *options])
    assert result.exit_code == 0, result.output
    return result, {row["video"]: row for row in read_results(out).to_pylist()}


ENGINES = [
    ("tensorflow", "fp32"),
    pytest.param("openvino", "fp32", marks=pytest.mark.slow),  # 30 s: OpenVINO's import, compile
    ("tensorflow", "bf16"),
]


@pytest.mark.parametrize(("engine", "precision"), ENGINES)
def test_cli_dataset_run_takes_a_config_file_and_an_engine(
    model, recorded, videos, tmp_path, engine, precision
):
    """--config small.json (not a preset) with each engine: the rows equal predict_video on
    the JSON's pipeline with the same engine; bf16 really ran (it differs from fp32)."""
    from videoswin_tf.inference import has_native_bf16

    if precision == "bf16" and not has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    weights, config = recorded
    options = ["--config", str(config), "--engine", engine, "--precision", precision]
    result, rows = cli_dataset_run(weights, videos[:2], tmp_path / "out", *options)
    assert f"engine: {engine}, {precision} (as asked)" in result.output
    for path in videos[:2]:
        row = rows[str(path)]
        one = predict_video(
            model, path, PIPELINE, labels=NUMBERS, top=3, features=True, engine=engine,
            precision=precision,
        )  # fmt: skip
        fp32 = predict_video(model, path, PIPELINE, labels=NUMBERS, features=True, engine=engine)
        assert row["error"] is None and row["views"] == "1x1" and row["frames"] == one.num_frames
        assert row["top_labels"] == [entry.label for entry in one.top]
        np.testing.assert_allclose(row["probabilities"], one.probabilities, atol=1e-6, rtol=0)
        np.testing.assert_allclose(row["feature"], one.features, atol=1e-6, rtol=0)
        difference = np.abs(np.asarray(row["feature"]) - fp32.features).max()
        assert (difference > 0) == (precision == "bf16")


def test_cli_dataset_run_takes_the_config_the_weights_record(model, recorded, videos, tmp_path):
    """No --config: the file's recorded model, scored with the Kinetics protocol at 1x1 (32
    frames of 224x224) and class numbers for names, as plain vswin-predict does."""
    from videoswin_tf.video.model_setup import predict_setup

    weights, _ = recorded
    options = ["--views", "1x1", "--engine", "tensorflow"]
    _, rows = cli_dataset_run(weights, videos[:1], tmp_path / "out", *options)
    row = rows[str(videos[0])]
    pipeline = predict_setup(weights).pipeline
    assert (pipeline.clip_len, pipeline.crop_size) == (32, 224)
    one = predict_video(
        model, videos[0], pipeline, "1x1", labels=NUMBERS, top=3, features=True,
        engine="tensorflow",
    )  # fmt: skip
    assert row["error"] is None and row["top_labels"] == [entry.label for entry in one.top]
    np.testing.assert_allclose(row["probabilities"], one.probabilities, atol=1e-6, rtol=0)
    np.testing.assert_allclose(row["feature"], one.features, atol=1e-6, rtol=0)


def test_ray_runner_rows_equal_the_local_runner(small_weights, videos, tmp_path, monkeypatch):
    """A local 2-CPU Ray, offline (no dashboard, no usage reporting): the same rows as the
    local runner, features within 1e-6."""
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    tests = str(Path(__file__).parent)  # the actors import dataset_model from here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    settings = DatasetSettings(**{**SETTINGS.__dict__, "snippets": SnippetSpec(4, 3)})
    items = [*videos, tmp_path / "missing.mp4"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = predict_dataset(
            SmallWeights(str(small_weights)), items, tmp_path / "ray", settings, "ray", False
        )
    finally:
        ray.shutdown()
    local = predict_dataset(SmallWeights(str(small_weights)), items, tmp_path / "local", settings)
    assert (on_ray.written, on_ray.failed) == (local.written, local.failed) == (6, 1)
    ray_rows = {row["video"]: row for row in read_results(tmp_path / "ray").to_pylist()}
    local_rows = {row["video"]: row for row in read_results(tmp_path / "local").to_pylist()}
    assert ray_rows.keys() == local_rows.keys()
    for video, expected in local_rows.items():
        row = ray_rows[video]
        for column in ("label", "frames", "fps", "views", "top_labels", "top_indices", "error"):
            assert row[column] == expected[column], column
        for column in ("probabilities", "feature", "snippet_features", "snippet_times"):
            if expected[column] is None:
                assert row[column] is None
            else:
                np.testing.assert_allclose(row[column], expected[column], atol=1e-6, rtol=0)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow  # about 90 s: a Ray head, the CLI's Ray driver and actor, the local run
def test_ray_runner_joins_a_running_cluster(model, recorded, videos, tmp_path):
    """The README's commands: a head started with ``ray start --head`` (2 CPUs, no dashboard,
    no usage reporting), then ``vswin-predict ... --ray --ray-address HEAD:PORT``: the rows
    equal the local runner's. The head is stopped by ending the process group this test
    started (``ray stop`` would stop every Ray of this user on the machine)."""
    weights, config = recorded
    port, client, agent, metrics, runtime = free_ports(5)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's sockets need a short path
    bin_dir = Path(sys.executable).parent
    # Ray authenticates with a token: this cluster's own, not the user's ~/.ray/auth_token
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **token}
    readme = ["--head", "--num-cpus", "2", "--port", str(port), "--disable-usage-stats"]
    readme += ["--include-dashboard", "false"]
    here = ["--block", "--temp-dir", temp]  # this test's own: its folder and free ports
    here += ["--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent)]
    here += ["--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime)]
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", *readme, *here],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        started = []
        for line in head.stdout:  # ends when the head exits
            started.append(line)
            if "Ray runtime started" in line:
                break
        assert head.poll() is None, "".join(started)
        items = [*videos[:2], tmp_path / "missing.mp4"]
        options = ["--weights", str(weights), "--config", str(config), "--quiet", "--top", "3"]
        options += ["--out", str(tmp_path / "ray"), "--ray", "--ray-address", f"127.0.0.1:{port}"]
        done = subprocess.run(
            [str(bin_dir / "vswin-predict"), *map(str, items), *options],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 1, done.stderr  # the missing video
    assert re.fullmatch(
        rf"2 videos written to {re.escape(str(tmp_path / 'ray'))}, 1 failed \(its row holds the "
        r"error\), 0 already complete, in [0-9.]+ s",
        done.stderr.splitlines()[-1],
    )
    options = ["--config", str(config), "--engine", "tensorflow"]
    _, local_rows = cli_dataset_run(weights, videos[:2], tmp_path / "local", *options)
    ray_rows = {row["video"]: row for row in read_results(tmp_path / "ray").to_pylist()}
    missing = tmp_path / "missing.mp4"
    assert ray_rows[str(missing)]["error"] == f"{missing}: no such file"
    for video, expected in local_rows.items():
        row = ray_rows[video]
        for column in ("frames", "fps", "views", "top_labels", "top_indices", "error"):
            assert row[column] == expected[column], column
        for column in ("probabilities", "feature"):
            np.testing.assert_allclose(row[column], expected[column], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "o", "--json", "r.json"], "--out writes every result to its Parquet shards"),
        (["--ray"], "--ray runs a dataset job: add --out DIR"),
        (["--snippets", "32:16"], "--snippets needs --features DIR or --out DIR"),
        (["--out", "o", "--snippets", "32"], "snippets '32' must read CLIP:STRIDE"),
        (
            ["--out", "o", "--ray", "--engine", "openvino"],
            "--engine and --precision apply to the local runner; --ray runs TensorFlow in fp32: "
            "drop them or drop --ray",
        ),
    ],
)
def test_cli_option_errors(videos, extra, message):
    from click.testing import CliRunner

    from videoswin_tf.cli.predict import main

    weights = str(videos[0])  # any existing file: the options are checked before it is read
    result = CliRunner().invoke(
        main, [str(videos[0]), "--weights", weights, "--config", "swin_t_k400", *extra]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_progress_bar_counts_videos_and_failures(model, tmp_path, capsys):
    settings = DatasetSettings(**{**SETTINGS.__dict__, "workers": 0})
    missing = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    predict_dataset(lambda: model, missing, tmp_path / "out", settings, progress=True)
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith("100%") and "2/2" in bar and "video/s" in bar and "failed=2" in bar


@pytest.fixture
def ctrl_c_after():
    """``ctrl_c_after(n)``: Ctrl-C after the n-th row of the next dataset run."""
    logger = logging.getLogger("videoswin_tf.video.dataset")
    level, handlers = logger.level, []

    def arm(rows: int) -> None:
        handlers.append(AfterRows(rows, ctrl_c))
        logger.addHandler(handlers[-1])
        logger.setLevel(logging.INFO)

    yield arm
    logger.setLevel(level)
    for handler in handlers:
        logger.removeHandler(handler)


def test_ctrl_c_keeps_the_rows_written_and_a_rerun_resumes(model, videos, tmp_path, ctrl_c_after):
    """Ctrl-C after 2 rows (a missing video's error and a complete one) of 4, a video in the
    decoding worker: `DatasetInterrupted` (a KeyboardInterrupt) with the counts, the 2 rows
    gathered into a shard; the rerun redoes only the missing video and the 2 not reached."""
    out = tmp_path / "out"
    items = [tmp_path / "missing.mp4", *videos[:3]]
    ctrl_c_after(2)
    with pytest.raises(DatasetInterrupted) as stop:
        predict_dataset(lambda: model, items, out, SETTINGS, progress=False)
    summary = stop.value.summary
    assert isinstance(stop.value, KeyboardInterrupt)
    assert (summary.written, summary.complete, summary.failed, summary.skipped) == (2, 1, 1, 0)
    assert (summary.model_seconds, summary.load_seconds) == (None, None)
    assert len(list(out.glob("part-*.parquet"))) == 1 and not list((out / ".rows").iterdir())
    kept = {row["video"]: row["error"] for row in read_results(out).to_pylist()}
    assert kept == {str(items[0]): f"{items[0]}: no such file", str(items[1]): None}
    in_process = DatasetSettings(**{**SETTINGS.__dict__, "workers": 0})
    again = predict_dataset(lambda: model, items, out, in_process, progress=False)
    assert (again.written, again.complete, again.failed, again.skipped) == (3, 2, 1, 1)


def test_cli_ctrl_c_says_what_was_kept_and_exits_130(recorded, videos, tmp_path, ctrl_c_after):
    """vswin-predict --out stopped by Ctrl-C: one line saying what is kept and how to resume,
    exit status 130 (not 1, "some videos failed"); the rerun's totals count the failed video
    apart from the written ones."""
    from click.testing import CliRunner

    from videoswin_tf.cli.predict import main

    weights, config = recorded
    out = tmp_path / "out"
    items = [tmp_path / "missing.mp4", *videos[:3]]
    arguments = [*map(str, items), "--weights", str(weights), "--config", str(config)]
    arguments += ["--out", str(out), "--quiet", "--workers", "0", "--engine", "tensorflow"]
    ctrl_c_after(2)
    stopped = CliRunner().invoke(main, arguments)
    assert stopped.exit_code == 130, stopped.output
    assert stopped.stderr.splitlines()[-1] == (
        f"interrupted: 1 video written to {out}, 1 failed (its row holds the error), 0 already "
        "complete; rerun the same command to resume"
    )
    assert "Aborted!" not in stopped.output
    rerun = CliRunner().invoke(main, arguments)
    assert rerun.exit_code == 1, rerun.output
    assert re.fullmatch(
        rf"2 videos written to {re.escape(str(out))}, 1 failed \(its row holds the error\), "
        r"1 already complete, in [0-9.]+ s",
        rerun.stderr.splitlines()[-1],
    )


def test_cli_ctrl_c_without_out_is_one_line_and_exit_130(recorded, videos, tmp_path, monkeypatch):
    """vswin-predict without --out stopped by Ctrl-C in its second video: the first video's
    table stays printed, one line says what was done (--json is written whole or not at all),
    exit status 130 instead of click's "Aborted!" and 1, and a second Ctrl-C while the process
    ends is ignored. Ctrl-C while the model loads, or before, likewise."""
    from click.testing import CliRunner

    import videoswin_tf.cli.predict as cli

    weights, config = recorded
    results = tmp_path / "results.json"
    arguments = [*map(str, videos[:3]), "--weights", str(weights), "--config", str(config)]
    arguments += ["--engine", "tensorflow", "--json", str(results)]
    classified = []

    def stopped_in_the_second(model, path, *args, **kwargs):
        classified.append(path)
        if len(classified) == 2:
            raise KeyboardInterrupt
        return predict_video(model, path, *args, **kwargs)

    monkeypatch.setattr(cli, "predict_video", stopped_in_the_second)
    stopped = CliRunner().invoke(cli.main, arguments)
    assert stopped.exit_code == 130, stopped.output
    assert stopped.stderr.splitlines()[-1] == (
        f"interrupted: 1 of 3 videos classified, 0 failed; {results} not written"
    )
    assert stopped.stdout.startswith(f"{videos[0]}  (") and str(videos[1]) not in stopped.stdout
    assert "Aborted!" not in stopped.output and not results.exists()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    for where, line in [
        ("_load_model", "interrupted while loading the model: nothing written"),
        ("predict_setup", "interrupted"),
    ]:
        monkeypatch.setattr(cli, where, ctrl_c)
        stopped = CliRunner().invoke(cli.main, arguments)
        assert (stopped.exit_code, stopped.stdout, stopped.stderr.splitlines()[-1]) == (
            130,
            "",
            line,
        ), where
        assert "Aborted!" not in stopped.output


def waiting_on_a_pipe(pid: int) -> list[int]:
    """The child processes of ``pid`` blocked opening a named pipe no one writes to."""
    return [
        child
        for child in children(pid)
        if Path(f"/proc/{child}/wchan").read_text(errors="replace") == "wait_for_partner"
    ]


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="reads /proc")
def test_cli_ctrl_c_stops_a_worker_inside_its_video_and_ignores_a_second(
    recorded, videos, tmp_path, monkeypatch
):
    """Ctrl-C while a decoding worker is inside a video it would never finish (a named pipe:
    opening it waits for a writer) stops that worker instead of waiting for it (the run hung
    there); a second Ctrl-C (a real SIGINT) while the rows are gathered into their shard is
    ignored: one line, exit status 130, the finished video's row kept."""
    from click.testing import CliRunner

    from videoswin_tf.cli.predict import main

    weights, config = recorded
    out, pipe = tmp_path / "out", tmp_path / "pipe.mp4"
    os.mkfifo(pipe)
    arguments = [str(videos[0]), str(pipe), str(videos[1]), "--weights", str(weights)]
    arguments += ["--config", str(config), "--out", str(out), "--quiet", "--workers", "1"]
    arguments += ["--engine", "tensorflow"]

    def once_the_worker_waits_on_the_pipe():
        deadline = time.monotonic() + 60
        while not waiting_on_a_pipe(os.getpid()):
            assert time.monotonic() < deadline, "no worker opened the pipe"
            time.sleep(0.02)
        raise KeyboardInterrupt

    gather = ShardWriter.flush

    def gather_after_a_second_ctrl_c(writer):
        os.kill(os.getpid(), signal.SIGINT)
        gather(writer)

    monkeypatch.setattr(ShardWriter, "flush", gather_after_a_second_ctrl_c)
    logger = logging.getLogger("videoswin_tf.video.dataset")
    handler = AfterRows(1, once_the_worker_waits_on_the_pipe)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        stopped = CliRunner().invoke(main, arguments)
    finally:
        logger.removeHandler(handler)
    assert stopped.exit_code == 130, stopped.output
    assert stopped.stderr.splitlines()[-1] == (
        f"interrupted: 1 video written to {out}, 0 failed, 0 already complete; rerun the same "
        "command to resume"
    )
    assert "Aborted!" not in stopped.output
    assert not waiting_on_a_pipe(os.getpid())
    assert [row["video"] for row in read_results(out).to_pylist()] == [str(videos[0])]


# Decoding workers without a model: `_DecodeAhead` with 2 workers over the listed videos,
# printing each decoded video. argv[1] "starting": the first worker to start sends Ctrl-C
# (SIGINT) to the process group while it imports this file, before the pool's initializer
# runs; "idle": after the first video, waits for the others then prints "idle" and sleeps, the
# workers waiting on their queue.
DECODING = """
import concurrent.futures, os, signal, sys, time
sys.path.insert(0, {tests!r})
from dataset_model import PIPELINE
from videoswin_tf.video.dataset import DatasetItem, DatasetSettings, _DecodeAhead

if __name__ == "__mp_main__" and sys.argv[1] == "starting":  # a worker starting up
    try:
        os.close(os.open({token!r}, os.O_CREAT | os.O_EXCL))  # the first worker only
        os.killpg(0, signal.SIGINT)
    except FileExistsError:
        pass

if __name__ == "__main__":  # the decoding workers are spawned: they import this file
    items = [DatasetItem(video) for video in {videos!r}]
    try:
        with _DecodeAhead(items, DatasetSettings(config=PIPELINE, workers=2)) as decoded:
            for video in decoded:
                print(video.item.video, flush=True)
                if sys.argv[1] == "idle":
                    concurrent.futures.wait(decoded.queue)
                    print("idle", flush=True)
                    time.sleep(600)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def decoding(videos, tmp_path: Path, mode: str) -> subprocess.Popen:
    """The `DECODING` script in its own process group (a Ctrl-C there reaches only it)."""
    script = tmp_path / "decoding.py"
    here, token = str(Path(__file__).parent), str(tmp_path / "token")
    script.write_text(DECODING.format(tests=here, videos=list(map(str, videos)), token=token))
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # it ended meanwhile
            continue
    return found


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an orphan's zombie waits for PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["starting", "idle"])
def test_ctrl_c_is_the_main_process_s_alone(videos, tmp_path, mode):
    """Ctrl-C (SIGINT to the process group) while a decoding worker starts, or (sent from
    here) while the workers wait on their queue: the main process stops them; they print
    nothing (no KeyboardInterrupt traceback each) and end."""
    run = decoding(videos, tmp_path, mode)
    try:
        if mode == "idle":
            assert [run.stdout.readline() for _ in range(2)] == [f"{videos[0]}\n", "idle\n"]
            os.killpg(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert (run.returncode, stderr) == (0, "")
    assert stdout.splitlines()[-1] == "interrupted"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_decoding_workers_end_when_the_main_process_is_killed(videos, tmp_path):
    """SIGKILL of the main process (nothing of it runs): its 2 decoding workers, waiting on
    their queue, notice and end within seconds; then so does multiprocessing's resource
    tracker (its last holders gone)."""
    run = decoding(videos, tmp_path, "idle")
    try:
        assert [run.stdout.readline() for _ in range(2)] == [f"{videos[0]}\n", "idle\n"]
        started = children(run.pid)
        assert len(started) == 3  # 2 workers and the resource tracker
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 5
        while any(map(running, started)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in started if running(pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):  # none left: the test passed
            os.killpg(run.pid, signal.SIGKILL)


# vswin-predict as installed, stopped after its third row (for a Ctrl-C to land mid-run).
HELD_CLI = """
import logging, sys
sys.path.insert(0, {tests!r})
from dataset_model import AfterRows, hold
from videoswin_tf.cli.predict import main

logging.getLogger("videoswin_tf.video.dataset").setLevel(logging.INFO)
logging.getLogger("videoswin_tf.video.dataset").addHandler(AfterRows(3, hold))
main()
"""


# vswin-predict as installed, held (a marker file says so) in its second video without --out,
# or after its first row with --out.
HELD_TWICE = """
import logging, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from dataset_model import AfterRows
import videoswin_tf.cli.predict as cli

def hold():
    Path({marker!r}).touch()
    time.sleep(600)

def held(model, path, *args, **kwargs):
    if path.name == {second!r}:
        hold()
    return predict_video(model, path, *args, **kwargs)

predict_video, cli.predict_video = cli.predict_video, held
logging.getLogger("videoswin_tf.video.dataset").setLevel(logging.INFO)
logging.getLogger("videoswin_tf.video.dataset").addHandler(AfterRows(1, hold))
cli.main()
"""


def ctrl_c_when(command: list[str], ready, times: int) -> tuple[int, str, str]:
    """Run ``command`` in a process group of its own, wait (at most 120 s) until ``ready()``,
    press Ctrl-C ``times`` times 0.2 s apart (SIGINT to the group) and return its exit status,
    stdout and stderr; whatever is left of the group is killed."""
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for press in range(times):
            if press:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                os.killpg(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    return run.returncode, stdout, stderr


@pytest.mark.slow  # about 15 s each: TensorFlow's import and the model in another process
@pytest.mark.parametrize("dataset_run", [False, True])
def test_cli_ctrl_c_twice(recorded, videos, tmp_path, dataset_run):
    """Ctrl-C twice, 0.2 s apart (SIGINT to vswin-predict's process group), without --out in
    its second video, or with --out after its first row while its decoding worker waits on a
    named pipe (a video it would never finish): one line, no traceback, no "Aborted!", exit
    status 130, and the process ends without waiting for the worker."""
    weights, config = recorded
    out, marker, pipe = tmp_path / "out", tmp_path / "holding", tmp_path / "pipe.mp4"
    listed = [videos[0], videos[1], videos[2]]
    arguments = ["--weights", str(weights), "--config", str(config), "--engine", "tensorflow"]
    if dataset_run:
        os.mkfifo(pipe)
        listed[1] = pipe
        arguments += ["--out", str(out), "--quiet", "--workers", "1"]
    script = HELD_TWICE.format(
        tests=str(Path(__file__).parent), marker=str(marker), second=videos[1].name
    )
    command = [sys.executable, "-c", script, *map(str, listed), *arguments]
    returncode, stdout, stderr = ctrl_c_when(command, marker.exists, times=2)
    assert returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr, stderr
    assert stderr.splitlines()[-1] == (
        f"interrupted: 1 video written to {out}, 0 failed, 0 already complete; rerun the same "
        "command to resume"
        if dataset_run
        else "interrupted: 1 of 3 videos classified, 0 failed"
    )
    assert stdout.startswith("" if dataset_run else f"{videos[0]}  (")


@pytest.mark.slow  # about 15 s: TensorFlow's import and the model in another process
def test_cli_ctrl_c_with_decoding_workers(recorded, videos, tmp_path):
    """The trial's run: vswin-predict --out --workers 2, Ctrl-C (SIGINT to its process group)
    after 3 rows: one line, no worker tracebacks, exit status 130, the 3 rows kept."""
    weights, config = recorded
    out = tmp_path / "out"
    arguments = [*map(str, videos), "--weights", str(weights), "--config", str(config)]
    arguments += ["--out", str(out), "--quiet", "--workers", "2", "--shard-size", "100"]
    script = HELD_CLI.format(tests=str(Path(__file__).parent))
    command = [sys.executable, "-c", script, *arguments, "--engine", "tensorflow"]
    returncode, _, stderr = ctrl_c_when(
        command, lambda: len(list(out.glob(".rows/*.parquet"))) >= 3, times=1
    )
    assert returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == (
        f"interrupted: 3 videos written to {out}, 0 failed, 0 already complete; rerun the same "
        "command to resume"
    )
    assert [row["error"] for row in read_results(out).to_pylist()] == [None] * 3
