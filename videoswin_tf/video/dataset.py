"""Dataset runs: many videos to Parquet shards, resumable, with decoding ahead of the model.

`predict_dataset` classifies (and embeds) every video of a list and writes one row per video
to Parquet shards in a folder (`SCHEMA`). Each shard is written to a hidden temporary file and
renamed, so a shard is whole or absent; a killed run loses at most the videos not yet in a
shard. A rerun skips the videos that have a complete row (no error) in the folder and redoes
the rest; `read_results` gives one row per video (its complete row, else its latest error).

The local runner decodes in worker processes (``workers``) at most ``workers * ahead`` videos
ahead of the model, so the model does not wait on FFmpeg; the model runs in the calling
process. A video that fails (missing, truncated, no video stream...) is a row with its error,
never a stopped run. ``runner="ray"`` runs the same job on Ray Data
(`videoswin_tf.video.ray_runner`).

Needs the ``video`` extra and pyarrow (``pip install videoswin-tf[dataset]``).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
        shard_size: rows per Parquet shard (a killed run loses at most this many videos).
        replicas: with Ray, model replicas (actors, each loading the weights once).
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


@dataclasses.dataclass
class DatasetSummary:
    """What a run did.

    Attributes:
        written: rows written (complete or with an error).
        skipped: videos with a complete row before the run.
        failed: rows written with an error.
        seconds: wall time of the run.
        model_seconds: time in the model and the head (summed over Ray replicas).
        load_seconds: time loading the model (summed over Ray replicas).
    """

    written: int
    skipped: int
    failed: int
    seconds: float
    model_seconds: float
    load_seconds: float = 0.0


def read_video_list(path: str | os.PathLike) -> list[DatasetItem]:
    """The videos of a list file: ``.txt`` one path a line (blank lines and ``#`` comments
    skipped); ``.csv`` (header row) or ``.jsonl`` (an object a line) with a ``video`` column
    and an optional ``label``. Relative paths are taken from the list's folder.

    Raises:
        ValueError: an unknown ending, or a row without ``video`` (naming the line).
    """
    path = Path(path)
    if path.suffix not in LIST_SUFFIXES:
        raise ValueError(f"{path}: a video list must end in {', '.join(LIST_SUFFIXES)}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        rows = [
            (number, {"video": line.strip()})
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    elif path.suffix == ".csv":
        rows = list(enumerate(csv.DictReader(text.splitlines()), 2))
    else:
        rows = [
            (number, json.loads(line))
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    items = []
    for number, row in rows:
        if not isinstance(row, dict) or not row.get("video"):
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
        videos: the videos (`DatasetItem`, or paths); a video listed twice runs once.
        out: the shards' folder (created).
        settings: what to compute (`DatasetSettings`).
        runner: ``"local"`` or ``"ray"``.
        progress: a progress bar on stderr (default: when stderr is a terminal).
        ray_address: with ``runner="ray"``, a running cluster to join (default: a local Ray).

    Returns:
        a `DatasetSummary`; ``failed`` counts the videos written with an error.
    """
    listed = [v if isinstance(v, DatasetItem) else DatasetItem(str(v)) for v in videos]
    items = list({item.video: item for item in reversed(listed)}.values())[::-1]  # first of each
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for partial in out.glob(".*.parquet.partial"):  # left by a killed run
        partial.unlink()
    complete = completed_videos(out)
    todo = [item for item in items if item.video not in complete]
    started = time.perf_counter()
    bar = _Progress(len(todo), progress)
    writer = ShardWriter(out, settings.shard_size)
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; expected one of {RUNNERS}")
    try:  # rows done before Ctrl-C or an error are kept
        if runner == "local":
            model_seconds, load_seconds = _run_local(load_model, todo, settings, writer, bar)
        else:
            from videoswin_tf.video.ray_runner import run_ray

            model_seconds, load_seconds = run_ray(
                load_model, todo, settings, writer, bar, ray_address
            )
    finally:
        writer.flush()
        bar.close()
    return DatasetSummary(
        writer.rows,
        len(items) - len(todo),
        bar.failed,
        time.perf_counter() - started,
        model_seconds,
        load_seconds,
    )


def completed_videos(out: str | os.PathLike) -> set[str]:
    """The videos with a complete row (no error) in the shards of ``out``."""
    pq = import_extra("pyarrow.parquet")
    done: set[str] = set()
    for shard in sorted(Path(out).glob("part-*.parquet")):
        table = pq.read_table(shard, columns=["video", "error"])
        videos, errors = table["video"].to_pylist(), table["error"].to_pylist()
        done.update(video for video, error in zip(videos, errors, strict=True) if error is None)
    return done


def read_results(out: str | os.PathLike):
    """One row per video from the shards of ``out`` (a pyarrow Table, `SCHEMA`): its
    complete row, else its latest error row."""
    pa, pq = import_extra("pyarrow"), import_extra("pyarrow.parquet")
    shards = sorted(Path(out).glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    rows: dict[str, dict] = {}
    for shard in shards:
        for row in pq.read_table(shard).to_pylist():
            if rows.get(row["video"], {}).get("error", "x") is not None:
                rows[row["video"]] = row
    return pa.Table.from_pylist(list(rows.values()), schema=schema())


class ShardWriter:
    """Collects rows and writes them ``shard_size`` at a time as ``part-<run>-<n>.parquet``:
    each to a hidden ``.partial`` file first, then renamed."""

    def __init__(self, out: Path, shard_size: int):
        self.out, self.shard_size = out, shard_size
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.pending: list[dict] = []
        self.rows = self.shards = 0

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pa, pq = import_extra("pyarrow"), import_extra("pyarrow.parquet")
        table = pa.Table.from_pylist(self.pending, schema=schema())
        name = f"part-{self.run}-{self.shards:05d}.parquet"
        tmp = self.out / f".{name}.partial"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.out / name)
        finally:
            tmp.unlink(missing_ok=True)
        self.rows += len(self.pending)
        self.shards += 1
        self.pending = []


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
        out = run_views(model, decoded.views, settings.batch_size, features=settings.features)
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
                model, decoded.item.video, settings.snippets, settings.config, settings.batch_size
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
    """Rows of ``todo`` to ``writer``; the seconds in the model and loading it."""
    started = time.perf_counter()
    model = load_model()
    load_seconds = time.perf_counter() - started
    names = class_names(model, settings)
    model_seconds = 0.0
    for decoded in _decoded(todo, settings):
        started = time.perf_counter()
        row = model_row(model, decoded, settings, names)
        model_seconds += time.perf_counter() - started
        writer.add(row)
        bar.update(row)
    return model_seconds, load_seconds


def _decoded(todo: list[DatasetItem], settings: DatasetSettings) -> Iterator[Decoded]:
    """The videos decoded in order: in ``settings.workers`` processes, at most ``workers *
    ahead`` ahead of the consumer, or in this process with no workers."""
    if settings.workers == 0:
        yield from (decode_item(item, settings) for item in todo)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process running TensorFlow
    with concurrent.futures.ProcessPoolExecutor(settings.workers, mp_context=context) as pool:
        queue: deque = deque()
        items = iter(todo)
        for item in items:
            queue.append(pool.submit(decode_item, item, settings))
            if len(queue) >= settings.workers * settings.ahead:
                break
        while queue:
            decoded = queue.popleft().result()
            next_item = next(items, None)
            if next_item is not None:
                queue.append(pool.submit(decode_item, next_item, settings))
            yield decoded


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
