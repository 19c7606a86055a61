"""Dataset runs: many videos to Parquet shards, resumable, with decoding ahead of the model.

`predict_dataset` classifies (and embeds) every video of a list and writes one row per video
to Parquet shards in a folder (`COLUMNS`). Each row is durable as soon as its video is done
(its own small file under ``.rows/``, gathered into a shard every ``shard_size`` rows), and
every file is written to a hidden temporary file and renamed, so it is whole or absent: a
killed run loses only the videos being decoded or on the model. A rerun first gathers the
row files it finds into their shards, then skips the videos that have a complete row (no
error) and redoes the rest; `read_results` gives one row per video (its complete row, else
its latest error).

The local runner decodes in worker processes (``workers``) at most ``workers * ahead`` videos
ahead of the model, so the model does not wait on FFmpeg; the model runs in the calling
process. Ctrl-C stops a run (`DatasetInterrupted`, keeping its rows; a second Ctrl-C while
they are kept is ignored); the workers leave SIGINT to the calling process, which stops them
without waiting for the videos they are decoding, and they end by themselves when it dies,
even killed with SIGKILL. A video
that fails (missing, truncated, no video stream...) is a row with its error, never a stopped
run. ``runner="ray"`` runs the same job on Ray Data (`videoswin_tf.video.ray_runner`).

Needs the ``video`` extra and pyarrow (``pip install videoswin-tf[dataset]``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from videoswin_tf.inference import TENSORFLOW_FP32, EngineChoice
from videoswin_tf.presets import TestPipeline
from videoswin_tf.video.decode import VideoError
from videoswin_tf.video.extra import import_extra
from videoswin_tf.video.predict import (
    DEFAULT_BATCH,
    _class_names,
    average_probabilities,
    run_views,
    top_classes,
    video_views,
    view_pipeline,
)
from videoswin_tf.video.snippets import SnippetSpec, snippet_features

# File endings read as lists of videos.
LIST_SUFFIXES = (".txt", ".csv", ".jsonl")

RUNNERS = ("local", "ray")

# The folder (inside a run's output folder) of the rows not yet gathered into a shard.
ROWS = ".rows"

LOG = logging.getLogger(__name__)

# Seconds between a decoding worker's checks that the process it decodes for is alive.
PARENT_CHECK_SECONDS = 0.25

# The Parquet columns, in order: name -> (pyarrow type name, meaning). `schema()` builds it.
COLUMNS = {
    "video": ("string", "the video as listed"),
    "label": ("string", "the list's label column, if any"),
    "frames": ("int64", "frames in the video"),
    "fps": ("float64", "the stream's average frame rate"),
    "duration": ("float64", "frames / fps, seconds"),
    "views": ("string", "the views protocol, e.g. 4x3"),
    "top_labels": ("list<string>", "the top-k class names, best first"),
    "top_indices": ("list<int64>", "their class indices"),
    "top_probabilities": ("list<float32>", "their averaged probabilities"),
    "probabilities": ("list<float32>", "softmax per view averaged over views (classes,)"),
    "feature": ("list<float32>", "pooled backbone feature averaged over views (C,)"),
    "snippet_features": ("list<list<float32>>", "(snippets, C), with --snippets"),
    "snippet_times": ("list<list<float64>>", "(snippets, 2) start, end in seconds"),
    "error": ("string", "why the video failed; null for a complete row"),
}


def schema():
    """The pyarrow schema of the shards (`COLUMNS`)."""
    pa = import_extra("pyarrow")
    kinds = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "list<string>": pa.list_(pa.string()),
        "list<int64>": pa.list_(pa.int64()),
        "list<float32>": pa.list_(pa.float32()),
        "list<list<float32>>": pa.list_(pa.list_(pa.float32())),
        "list<list<float64>>": pa.list_(pa.list_(pa.float64())),
    }
    return pa.schema([(name, kinds[kind]) for name, (kind, _) in COLUMNS.items()])


@dataclasses.dataclass(frozen=True)
class DatasetItem:
    """One video of a dataset: its path as listed and its label, if the list has one."""

    video: str
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """What a dataset run computes and how.

    Attributes:
        config: a named config (pipeline and label map) or a `TestPipeline`.
        views: ``"4x3"``, ``"1x1"``...; default the config's protocol.
        sampling: ``"vswin"`` or ``"mmaction2"``.
        top: classes named per video.
        labels: class names; default the preset's map (indices for a bare pipeline).
        features: write the pooled feature column.
        snippets: also the features along time (`SnippetSpec`), computed in the model's
            process.
        batch_size: views per forward pass.
        workers: decoding processes (0: decode in the model's process).
        ahead: videos decoded ahead per worker (the bounded queue).
        shard_size: rows per Parquet shard (each row is durable before its shard is).
        replicas: with Ray, model replicas (actors, each loading the weights once).
        engine: what runs the model (`videoswin_tf.inference.choose`): TensorFlow fp32 by
            default; OpenVINO and bf16 in the local runner only.
    """

    config: str | TestPipeline = "swin_t_k400"
    views: str | None = None
    sampling: str = "vswin"
    top: int = 5
    labels: Sequence[str] | None = None
    features: bool = True
    snippets: SnippetSpec | None = None
    batch_size: int = DEFAULT_BATCH
    workers: int = 1
    ahead: int = 2
    shard_size: int = 16
    replicas: int = 1
    engine: EngineChoice = TENSORFLOW_FP32

    @property
    def pipeline(self) -> TestPipeline:
        return view_pipeline(self.config, self.views)


@dataclasses.dataclass(frozen=True)
class PresetWeights:
    """A named config's model with weights from a file, built when called: what a run (and
    each Ray actor) loads once. Picklable.

    Attributes:
        config: the named config (`videoswin_tf.presets`).
        weights: its ``.weights.h5`` file, as vswin-convert wrote it.
    """

    config: str
    weights: Path

    def __call__(self):
        from videoswin_tf.presets import get_preset
        from videoswin_tf.startup import start_tensorflow_quietly

        start_tensorflow_quietly()
        import videoswin_tf

        preset = get_preset(self.config)
        model = getattr(videoswin_tf, preset.builder)(**preset.model_kwargs())
        model.load_weights(str(self.weights))
        return model


@dataclasses.dataclass(frozen=True)
class ModelWeights:
    """`videoswin_tf.TFSwinTransformer3D` built from its arguments, with weights from a file,
    when called: what each Ray actor loads once for a model that is not a preset (a config
    file's, or the one a weights file records). Picklable.

    Attributes:
        arguments: the builder's arguments (`videoswin_tf.video.model_setup.PredictSetup`'s
            ``model``).
        weights: the ``.weights.h5`` (or ``.h5``) file.
    """

    arguments: dict[str, Any]
    weights: Path

    def __call__(self):
        from videoswin_tf.startup import start_tensorflow_quietly

        start_tensorflow_quietly()
        from videoswin_tf.model import TFSwinTransformer3D

        model = TFSwinTransformer3D(**self.arguments)
        model.load_weights(str(self.weights))
        return model


@dataclasses.dataclass
class DatasetSummary:
    """What a run did.

    Attributes:
        written: rows written (complete or with an error).
        skipped: videos with a complete row before the run.
        failed: rows written with an error.
        seconds: wall time of the run.
        model_seconds: time in the model and the head (summed over Ray replicas); ``None`` for
            an interrupted run (`DatasetInterrupted`).
        load_seconds: time loading the model (summed over Ray replicas); ``None`` likewise.
    """

    written: int
    skipped: int
    failed: int
    seconds: float
    model_seconds: float | None
    load_seconds: float | None = 0.0

    @property
    def complete(self) -> int:
        """Rows written without an error."""
        return self.written - self.failed


class DatasetInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a dataset run. The rows written before it are kept in their
    shards, so rerunning the same run resumes. A `KeyboardInterrupt`: a script that does not
    catch it stops as before.

    Attributes:
        summary: the run until then (`DatasetSummary`, without the model's timings).
    """

    def __init__(self, summary: DatasetSummary):
        super().__init__(f"interrupted after {summary.written} rows")
        self.summary = summary


def read_video_list(path: str | os.PathLike) -> list[DatasetItem]:
    """The videos of a list file: ``.txt`` one path a line (blank lines and ``#`` comments
    skipped); ``.csv`` (its first line a header naming a ``video`` column) or ``.jsonl`` (an
    object a line) with a ``video`` column and an optional ``label``. Relative paths are taken
    from the list's folder. An empty list gives no items.

    Raises:
        ValueError: an unknown ending, a ``.csv`` header without ``video`` (naming the columns
            it has), a ``.jsonl`` line that is not a JSON object, or a row without ``video``
            (naming the file and the line).
    """
    path = Path(path)
    if path.suffix not in LIST_SUFFIXES:
        raise ValueError(f"{path}: a video list must end in {', '.join(LIST_SUFFIXES)}")
    text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte order mark
    if path.suffix == ".txt":
        rows = [
            (number, {"video": line.strip()})
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    elif path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is not None and "video" not in reader.fieldnames:
            raise ValueError(
                f"{path}:1: the header has no video column (columns: "
                f"{', '.join(reader.fieldnames) or 'none'}); the first line must be a header "
                "naming a video column, e.g. video,label"
            )
        rows = list(enumerate(reader, 2))
    else:
        rows = [
            (number, _json_row(path, number, line))
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    items = []
    for number, row in rows:
        if not row.get("video"):
            raise ValueError(f"{path}:{number}: no video column; each row needs a video path")
        label = row.get("label")
        video = Path(str(row["video"]))
        items.append(
            DatasetItem(
                str(video if video.is_absolute() else path.parent / video),
                None if label in (None, "") else str(label),
            )
        )
    return items


# What a .jsonl list's line must be, as its errors say.
JSONL_ROW = 'one JSON object a line, e.g. {"video": "clips/a.mp4", "label": "running"}'
# The JSON name of what `json.loads` gave, for a line that is not an object.
JSON_KINDS = {
    str: "a string",
    list: "an array",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_row(path: Path, number: int, line: str) -> dict:
    """Line ``number`` of the ``.jsonl`` list ``path`` as a JSON object.

    Raises:
        ValueError: the line is not JSON, or JSON but not an object (naming file and line).
    """
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno}); a .jsonl "
            f"list holds {JSONL_ROW}"
        ) from None
    if not isinstance(row, dict):
        raise ValueError(
            f"{path}:{number}: JSON {JSON_KINDS[type(row)]} where an object is expected; a "
            f".jsonl list holds {JSONL_ROW}"
        )
    return row


Entry = TypeVar("Entry")


def first_of_each(
    entries: Iterable[Entry], video: Callable[[Entry], str | os.PathLike]
) -> list[Entry]:
    """``entries`` in their order, each video once: the first of the entries whose ``video``
    has the same resolved path (absolute, ``.``/``..`` and symbolic links resolved; a missing
    file's path made absolute and normalised): run from ``/data``, ``clips/a.mp4``,
    ``./clips/a.mp4`` and ``/data/clips/a.mp4`` are one video. The rule of `predict_dataset`
    and of ``vswin-predict`` (a folder and a glob that both match a file give it once)."""
    kept: dict[Path, Entry] = {}
    for entry in entries:
        kept.setdefault(Path(video(entry)).resolve(), entry)
    return list(kept.values())


def predict_dataset(
    load_model: Callable[[], Any],
    videos: Iterable[DatasetItem | str | os.PathLike],
    out: str | os.PathLike,
    settings: DatasetSettings = DatasetSettings(),
    runner: str = "local",
    progress: bool | None = None,
    ray_address: str | None = None,
) -> DatasetSummary:
    """Classify and embed every video into Parquet shards in ``out`` (see the module
    docstring).

    Args:
        load_model: builds the model with its weights (called once; once per Ray actor);
            picklable for ``runner="ray"``.
        videos: the videos (`DatasetItem`, or paths). A video listed twice, under any
            spelling of its path, runs once (`first_of_each`: the same resolved path): its row
            has the first spelling and label. A rerun skips the videos whose spelling as
            listed has a complete row.
        out: the shards' folder (created).
        settings: what to compute (`DatasetSettings`).
        runner: ``"local"`` or ``"ray"``.
        progress: a progress bar on stderr (default: when stderr is a terminal).
        ray_address: with ``runner="ray"``, a running cluster to join (default: a local Ray).

    Returns:
        a `DatasetSummary`; ``failed`` counts the videos written with an error.

    Raises:
        DatasetInterrupted: Ctrl-C (SIGINT) during the run; the rows written are kept.
    """
    listed = [v if isinstance(v, DatasetItem) else DatasetItem(str(v)) for v in videos]
    items = first_of_each(listed, lambda item: item.video)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for partial in [*out.glob(".*.partial"), *(out / ROWS).glob(".*.partial")]:
        partial.unlink()  # left by a killed run
    ShardWriter.recover(out)
    complete = completed_videos(out)
    todo = [item for item in items if item.video not in complete]
    started = time.perf_counter()
    bar = _Progress(len(todo), progress)
    writer = ShardWriter(out, settings.shard_size)
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; expected one of {RUNNERS}")
    try:  # rows done before Ctrl-C or an error are kept
        if runner == "local":
            timings = _run_local(load_model, todo, settings, writer, bar)
        else:
            from videoswin_tf.video.ray_runner import run_ray

            timings = run_ray(load_model, todo, settings, writer, bar, ray_address)
    except KeyboardInterrupt:
        timings = None
    finally:
        with _sigint_ignored():  # a second Ctrl-C must not stop the rows being kept
            writer.flush()
            bar.close()
    seconds = time.perf_counter() - started
    summary = DatasetSummary(
        writer.rows, len(items) - len(todo), bar.failed, seconds, *(timings or (None, None))
    )
    if timings is None:
        raise DatasetInterrupted(summary)
    return summary


def completed_videos(out: str | os.PathLike) -> set[str]:
    """The videos with a complete row (no error) in the shards of ``out``."""
    pq = import_extra("pyarrow.parquet")
    done: set[str] = set()
    for shard in result_files(out):
        table = pq.read_table(shard, columns=["video", "error"])
        videos, errors = table["video"].to_pylist(), table["error"].to_pylist()
        done.update(video for video, error in zip(videos, errors, strict=True) if error is None)
    return done


def result_files(out: str | os.PathLike) -> list[Path]:
    """The shards of ``out`` and the row files a killed run left, oldest first."""
    files = [*Path(out).glob("part-*.parquet"), *(Path(out) / ROWS).glob("*.parquet")]
    return sorted(files, key=lambda path: path.stat().st_mtime_ns)


def read_results(out: str | os.PathLike):
    """One row per video from the shards of ``out`` (a pyarrow Table, `COLUMNS`): its
    complete row, else its latest error row."""
    pa, pq = import_extra("pyarrow"), import_extra("pyarrow.parquet")
    rows: dict[str, dict] = {}
    for shard in result_files(out):
        for row in pq.read_table(shard).to_pylist():
            if rows.get(row["video"], {}).get("error", "x") is not None:
                rows[row["video"]] = row
    return pa.Table.from_pylist(list(rows.values()), schema=schema())


class ShardWriter:
    """Makes each row durable as it is added, and gathers them into Parquet shards.

    A row is written at once to its own small file ``.rows/<run>-<shard>-<row>.parquet`` (to a
    ``.partial`` file first, then renamed), so a killed run keeps every video it finished.
    Every ``shard_size`` rows become the shard ``part-<run>-<shard>.parquet`` (written the same
    way) and their row files are removed. `recover` turns the row files a killed run left into
    their shards; the names make that safe to repeat (a shard that exists is not rewritten).
    Hidden files are skipped by ``pyarrow.dataset`` readers of the folder. One run at a time
    per folder: a second would gather the first's rows while it runs.
    """

    def __init__(self, out: Path, shard_size: int):
        self.out, self.shard_size = out, shard_size
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.pending: list[Path] = []  # row files of the shard being gathered
        self.rows = self.shards = 0

    def add(self, row: dict) -> None:
        path = self.out / ROWS / f"{self.run}-{self.shards:05d}-{len(self.pending):05d}.parquet"
        path.parent.mkdir(exist_ok=True)
        write_atomically(import_extra("pyarrow").Table.from_pylist([row], schema=schema()), path)
        self.pending.append(path)
        self.rows += 1
        LOG.info("%s: row written", row["video"])
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """The pending rows as one shard; their row files removed."""
        if self.pending:
            _gather(self.pending, self.out / f"part-{self.run}-{self.shards:05d}.parquet")
            self.shards += 1
            self.pending = []

    @staticmethod
    def recover(out: Path) -> None:
        """Gather the row files a killed run left in ``out`` into their shards."""
        groups: dict[str, list[Path]] = {}
        for path in sorted((out / ROWS).glob("*.parquet")):
            groups.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
        for shard, paths in groups.items():
            _gather(paths, out / f"part-{shard}.parquet")


def write_atomically(table, path: Path) -> None:
    """A pyarrow Table as a Parquet file at ``path``: a hidden ``.partial`` file, flushed to
    the disk, renamed, and the rename flushed too (the folder), so the file is whole or absent
    after a kill or a power loss, and a shard is on the disk before its row files go."""
    pq = import_extra("pyarrow.parquet")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(table, tmp)
        _sync(tmp)
        os.replace(tmp, path)
        _sync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """``fsync`` a file or a folder (a folder holds its entries' names: a rename in it)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _gather(row_files: list[Path], shard: Path) -> None:
    """Row files into ``shard`` (unless a run killed after writing it left them), then
    removed."""
    if not shard.exists():
        pa, pq = import_extra("pyarrow"), import_extra("pyarrow.parquet")
        write_atomically(pa.concat_tables(pq.read_table(path) for path in row_files), shard)
    for path in row_files:
        path.unlink()


@dataclasses.dataclass
class Decoded:
    """A video's views as a decode worker hands them to the model (or its error)."""

    item: DatasetItem
    frames: int | None = None
    fps: float | None = None
    views: np.ndarray | None = None  # (V, T, S, S, 3) uint8
    error: str | None = None


def decode_item(item: DatasetItem, settings: DatasetSettings) -> Decoded:
    """Decode one video's views; any failure becomes its error text (one line)."""
    try:
        cut = video_views(item.video, settings.pipeline, settings.sampling)
    except Exception as error:  # a broken video is a row, never a stopped run
        return Decoded(item, error=failure_text(item.video, error))
    return Decoded(item, cut.num_frames, cut.fps, cut.views)


def model_row(model, decoded: Decoded, settings: DatasetSettings, names) -> dict:
    """The Parquet row of one decoded video (`COLUMNS`); a failure becomes its error."""
    row: dict[str, Any] = {"video": decoded.item.video, "label": decoded.item.label}
    if decoded.error is not None:
        return {**row, "error": decoded.error}
    try:
        row.update(
            frames=decoded.frames,
            fps=decoded.fps,
            duration=decoded.frames / decoded.fps if decoded.fps else None,
            views=settings.pipeline.views,
        )
        out = run_views(
            model,
            decoded.views,
            settings.batch_size,
            features=settings.features,
            engine=settings.engine,
        )
        if names is not None:
            probabilities = average_probabilities(out["logits"])
            top = top_classes(probabilities, names, settings.top)
            row.update(
                top_labels=[entry.label for entry in top],
                top_indices=[entry.index for entry in top],
                top_probabilities=[entry.probability for entry in top],
                probabilities=probabilities,
            )
        if settings.features:
            row["feature"] = out["pooled"].mean(axis=0)
        if settings.snippets is not None:
            snippets = snippet_features(
                model,
                decoded.item.video,
                settings.snippets,
                settings.config,
                settings.batch_size,
                settings.engine,
            )
            row.update(snippet_features=list(snippets.features), snippet_times=list(snippets.times))
    except Exception as error:
        return {
            "video": row["video"],
            "label": row["label"],
            "error": failure_text(row["video"], error),
        }
    return row


def class_names(model, settings: DatasetSettings) -> list[str] | None:
    """The class names of a model with a head, else ``None``."""
    if getattr(model, "head", None) is None:
        return None
    return _class_names(model, settings.config, settings.labels)


def failure_text(video: str, error: Exception) -> str:
    """One line: a `VideoError`'s own message (it names the file), else the file, the
    exception's type and the first line of its message."""
    if isinstance(error, VideoError):
        return str(error)
    lines = str(error).strip().splitlines()
    return (
        f"{video}: {type(error).__name__}: {lines[0]}"
        if lines
        else f"{video}: {type(error).__name__}"
    )


def _run_local(load_model, todo, settings, writer, bar) -> tuple[float, float]:
    """Rows of ``todo`` to ``writer``; the seconds in the model and loading it. The decoding
    workers start, and decode the first videos, while the model loads."""
    with _DecodeAhead(todo, settings) as decoded:
        started = time.perf_counter()
        model = load_model()
        load_seconds = time.perf_counter() - started
        names = class_names(model, settings)
        model_seconds = 0.0
        for video in decoded:
            started = time.perf_counter()
            row = model_row(model, video, settings, names)
            model_seconds += time.perf_counter() - started
            writer.add(row)
            bar.update(row)
    return model_seconds, load_seconds


class _DecodeAhead:
    """The videos of ``todo`` decoded in order, in ``settings.workers`` processes at most
    ``workers * ahead`` videos ahead of the consumer (in the consumer's process with no
    workers). Decoding starts on entering the ``with`` block; leaving it stops the workers."""

    def __init__(self, todo: list[DatasetItem], settings: DatasetSettings):
        self.todo, self.settings = todo, settings
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.queue: deque = deque()

    def __enter__(self) -> _DecodeAhead:
        workers = self.settings.workers
        self.items = iter(self.todo)
        if workers:
            context = multiprocessing.get_context("spawn")  # no fork of a TensorFlow process
            self.pool = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_start_decode_worker,
                initargs=(os.getpid(),),
            )
            try:
                with _sigint_held():  # the first submits start the workers
                    for item in itertools.islice(self.items, workers * self.settings.ahead):
                        self.queue.append(self.pool.submit(decode_item, item, self.settings))
            except BaseException as error:  # a Ctrl-C held while they started
                self.__exit__(type(error))
                raise
        return self

    def __iter__(self) -> Iterator[Decoded]:
        if self.pool is None:
            yield from (decode_item(item, self.settings) for item in self.items)
            return
        while self.queue:
            decoded = self.queue.popleft().result()
            next_item = next(self.items, None)
            if next_item is not None:
                self.queue.append(self.pool.submit(decode_item, next_item, self.settings))
            yield decoded

    def __exit__(self, error_type=None, *exc_info) -> None:
        if self.pool is None:
            return
        if error_type is None:  # every video decoded and consumed
            self.pool.shutdown()
            return
        # Stopped (Ctrl-C, or the model failed to load): the videos in flight are never used,
        # so the workers end now instead of finishing them (a long video, or a file that
        # blocks on open, would hold the exit, and a second Ctrl-C would land anywhere).
        # ProcessPoolExecutor has no public way to end a running call before Python 3.14's
        # terminate_workers, hence its process table.
        with _sigint_ignored():
            workers = list((self.pool._processes or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.join()


def _start_decode_worker(parent: int) -> None:
    """A decoding worker's start (the pool's initializer). Ctrl-C is the main process's
    ``parent`` to handle (it stops the pool), so the worker ignores SIGINT: one held since the
    worker started (`_sigint_held`) is dropped. And the worker ends by itself once ``parent``
    is gone, even killed with SIGKILL, instead of waiting on its queue forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this process once ``parent`` is no longer its parent (it died and the orphan was
    adopted); checked every `PARENT_CHECK_SECONDS`."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held (blocked) in this thread inside the block, and so in the processes it
    starts (they inherit the mask) until they ignore it: a Ctrl-C while a worker starts up is
    neither a traceback there nor lost here (it arrives on leaving the block). Where there are
    no signal masks (Windows), nothing."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C (SIGINT) ignored inside the block: the steps that keep an interrupted run's
    rows and stop its workers run to their end. Only in the main thread, the one Python
    delivers signals to (elsewhere nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if before is None else before)


class _Progress:
    """A tqdm bar on stderr (videos done, videos/s, ETA, failures) when asked or on a
    terminal; counts failures either way."""

    def __init__(self, total: int, show: bool | None):
        self.failed = 0
        self.bar = None
        if show if show is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True)

    def update(self, row: dict) -> None:
        if row.get("error") is not None:
            self.failed += 1
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
