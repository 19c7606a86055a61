"""``vswin-predict``: classify and embed videos with a converted Video Swin checkpoint."""

from __future__ import annotations

import glob
import json
import os
import signal
import sys
import threading
from pathlib import Path

try:
    import click
    from click.core import ParameterSource
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"vswin-predict needs click ({error}); install it with: pip install 'videoswin-tf[video]'"
    ) from error

from videoswin_tf.inference import (
    ENGINES,
    PRECISIONS,
    TENSORFLOW_FP32,
    CacheFolderError,
    choose,
)
from videoswin_tf.labels import load_labels
from videoswin_tf.openvino_cache import DEFAULT_ENTRIES
from videoswin_tf.presets import presets
from videoswin_tf.startup import start_tensorflow_quietly
from videoswin_tf.video.dataset import (
    LIST_SUFFIXES,
    DatasetInterrupted,
    DatasetItem,
    DatasetSettings,
    DatasetSummary,
    ModelWeights,
    first_of_each,
    predict_dataset,
    read_video_list,
)
from videoswin_tf.video.decode import VideoError
from videoswin_tf.video.features_file import FORMATS, save_features
from videoswin_tf.video.model_setup import PredictSetup, SetupError, predict_setup
from videoswin_tf.video.predict import DEFAULT_BATCH, VideoOutput, predict_video, view_pipeline
from videoswin_tf.video.sampling import PROTOCOLS, clip_indices
from videoswin_tf.video.snippets import SnippetSpec, snippet_features

# File endings a folder argument is searched for.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")

EXAMPLES = f"""
\b
Examples:
  vswin-predict clip.mp4 --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
      --config swin_t_k400
  vswin-predict videos/ --weights W.weights.h5 --config swin_t_k400 --views 1x1 --json out.json
  vswin-predict 'clips/*.webm' --weights W.weights.h5 --config swin_b_ssv2 --features feats/
  vswin-predict long.mp4 --weights W.weights.h5 --config swin_t_k400 --features feats/ \\
      --snippets 32:16
  vswin-predict val.csv --weights W.weights.h5 --config swin_t_k400 --views 1x1 --out results/
  vswin-predict clip.mp4 --weights ucf101.weights.h5 --labels ucf101.txt

\b
Models with their own classes: the weights file records the model vswin-convert converted
(architecture, window, head), so --config may be left out. Class names: those the file
records (vswin-convert keeps a training run's meta.dataset_meta.classes), or give --labels.

\b
Protocols: K400/K600 configs score 4 clips x 3 crops (4x3), SSv2 1x3, as the checkpoints
were evaluated; --views 1x1 (one centre crop of one clip) is 12 times faster.

\b
OpenVINO cache: VSWIN_OPENVINO_CACHE=DIR keeps, per weights and clip size, the model the
openvino engine converted (its IR) and compiled, so later runs skip both (Swin-T, --views
1x1 under load: a run started in 7.6 s instead of 22.1 s). It keeps the {DEFAULT_ENTRIES} most
recently used (Swin-T's: about 0.2 GB each, its IR 199 MB and a compiled blob of 5 MB
without the weights, whatever the batch; VSWIN_OPENVINO_CACHE_ENTRIES=N keeps N). DIR is
only a cache: delete it any time to free the space; the next run converts again.
"""


class InputError(click.ClickException):
    """Bad input the command line is not at fault for: one ``Error:`` line on stderr, without
    the usage lines a bad option gets, and exit status 2 as for bad options."""

    exit_code = 2


class SettingError(InputError):
    """A bad environment setting (``VSWIN_OPENVINO_CACHE``, ``VSWIN_OPENVINO_CACHE_ENTRIES``)."""


class ListFileError(InputError):
    """A video list file (.txt, .csv, .jsonl) that is missing, lists no video or cannot be
    read."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what the run kept (its only argument)."""


class StopsOnCtrlC(click.Command):
    """A command that Ctrl-C (SIGINT) stops with one line on stderr and exit status 130 (128 +
    SIGINT, as shells report a job stopped by Ctrl-C), where click prints ``Aborted!`` and
    exits 1: the line of the `Interrupted` raised, else ``interrupted``. A second Ctrl-C while
    it stops is ignored."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            click.echo(stop.args[0] if isinstance(stop, Interrupted) else "interrupted", err=True)
            ctx.exit(130)


# Options that only act together with another, refused without it (they would be ignored):
# option -> (its parameter name, what it needs).
DEPENDENT_OPTIONS = {
    "--workers": ("workers", "--out DIR"),
    "--shard-size": ("shard_size", "--out DIR"),
    "--quiet": ("quiet", "--out DIR"),
    "--replicas": ("replicas", "--ray"),
    "--snippet-views": ("snippet_views", "--snippets CLIP:STRIDE"),
    "--features-format": ("features_format", "--features DIR"),
}

# Said once on stderr when the model's classes have no names (they are shown as numbers).
NO_CLASS_NAMES = (
    "note: no class names are recorded in the weights file or given, so classes are shown as "
    "numbers; pass --labels FILE (one name a line), or convert with vswin-convert --config NAME "
    "so that their names are recorded"
)


@click.command(
    cls=StopsOnCtrlC,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("videos", nargs=-1, required=True, metavar="VIDEO...")
@click.option(
    "--weights",
    required=True,
    type=click.Path(exists=True, path_type=Path),  # a folder: refused by the setup, saying why
    metavar="FILE",
    help="Keras weights: a .weights.h5 converted by vswin-convert, the seed's .h5, or the Keras "
    "3 rewrite's or KerasCV's .weights.h5 or .keras file (read as data). The model they record "
    "(for the Keras 3 ports', the one their shapes give) is built.",
)
@click.option(
    "--config",
    metavar="NAME|FILE",
    help="The config the weights were converted with: a preset (its label map and test "
    f"protocol; {', '.join(presets())}), or a config file vswin-convert takes (.json, mmaction2 "
    ".py; the convert extra). It must describe the model the file records. Default: the file's "
    "recorded config, scored with its preset's protocol or the Kinetics 4x3 one.",
)
@click.option(
    "--views",
    metavar="CxK",
    help="Clips x crops per video: any number of clips times 1 (centre crop) or 3 crops, e.g. "
    "4x3, 1x3, 1x1. Default: the config's protocol.",
)
@click.option(
    "--sampling",
    type=click.Choice(PROTOCOLS),
    default="vswin",
    show_default=True,
    help="Clip offsets: vswin (the Video-Swin test mode the checkpoints were scored with) or "
    "mmaction2 (1.x test mode: clips from the first to the last frame).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    metavar="K",
    help="How many classes to print (and write with --json) per video.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class names, one per line, line i for class i. Default: the class names the weights "
    "file records (a training run's meta.dataset_meta), else the label map of the config or "
    "the one the weights file records, else the class numbers.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results here (JSON): per video its frames, views, engine and "
    "precision, top classes, the weights, config and sampling a rerun needs, and the full "
    "averaged probability vector.",
)
@click.option(
    "--features",
    "features_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each video's pooled backbone features (per view and averaged) to this folder.",
)
@click.option(
    "--features-format",
    type=click.Choice(FORMATS),
    default="h5",
    show_default=True,
    help="h5: features, view_features (and stage_map) in <video>.h5; npy: the averaged "
    "vector as <video>.npy.",
)
@click.option(
    "--stage-map",
    is_flag=True,
    help="With --features, also keep the last stage's map per view (views, D, H, W, C).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH,
    show_default=True,
    metavar="N",
    help="Views per forward pass (bounds memory).",
)
# Features along time (videoswin_tf/video/snippets.py).
@click.option(
    "--snippets",
    metavar="CLIP:STRIDE",
    help="Also write features along time: one pooled vector per snippet of CLIP frames (at the "
    "config's frame interval: 32 spans 63 source frames for Kinetics) starting every STRIDE "
    "source frames, with start/end times in seconds; the last snippet repeats the last frame. "
    "Needs --features or --out. E.g. 32:16.",
)
@click.option(
    "--snippet-views",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="Crops per snippet, averaged: 1 (centre) or 3 (ThreeCrop).",
)
# Dataset runs (videoswin_tf/video/dataset.py).
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset run: write one row per video to Parquet shards in this folder (schema in "
    "the README). A rerun skips the videos already complete there.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    metavar="N",
    help="With --out: decoding processes ahead of the model (0: decode in the model's process).",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    metavar="N",
    help="With --out: videos per Parquet shard (each finished video is kept at once in a "
    "small row file; a killed run loses only the videos in flight).",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="With --out: no progress bar, only the totals (a failed video's error is in its row).",
)
@click.option(
    "--ray", is_flag=True, help="With --out: run on Ray Data (pip install 'videoswin-tf[ray]')."
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="With --ray: model replicas (Ray actors, each loading the weights once).",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    help="With --ray: join this running cluster (ray start --head prints it); default a local Ray.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    help="What runs the model: openvino (needs pip install 'videoswin-tf[openvino]') or "
    "tensorflow. Default: openvino when installed (the faster in quiet measurements, README "
    "Benchmarks), else tensorflow; stderr says which. With --ray: tensorflow only.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="bf16 runs faster on CPUs with native bf16 (AVX512_BF16 or AMX) and is refused on "
    "others; fp32 is what the checkpoints' accuracy figures were measured in.",
)
def main(
    videos,
    weights,
    config,
    views,
    sampling,
    top,
    labels,
    json_path,
    features_dir,
    features_format,
    stage_map,
    batch,
    snippets,
    snippet_views,
    out_dir,
    workers,
    shard_size,
    quiet,
    ray,
    replicas,
    ray_address,
    engine,
    precision,
) -> None:
    """Classify videos (and optionally save their features) as the checkpoints were scored:
    count the frames, decode those the clips use, resize the short side, crop the views,
    softmax per view, average over views, and print the top classes.

    VIDEO is a file, a folder (its video files), a quoted glob, or a list file (.txt of
    paths; .csv or .jsonl with a video column and an optional label). A video that cannot be
    read or fails in any other way is reported on one line and the others still run; the exit
    status is 1 if any failed, 2 for bad options. With --out DIR the results go to Parquet
    shards instead (a failed video is a row with its error), and a rerun resumes, after Ctrl-C
    too (exit status 130).
    """
    # The options alone first: a bad combination stops before any file is read.
    if stage_map and features_dir is None:
        raise click.UsageError("--stage-map needs --features DIR")
    if out_dir is not None and (json_path or features_dir):
        raise click.UsageError(
            "--out writes every result to its Parquet shards: drop --json and --features"
        )
    if (ray or ray_address) and out_dir is None:
        given = "--ray" if ray else "--ray-address"
        raise click.UsageError(f"{given} runs a dataset job: add --out DIR")
    on_ray = ray or ray_address is not None
    _refuse_lone_options(
        {
            "--out DIR": out_dir is not None,
            "--ray": on_ray,
            "--snippets CLIP:STRIDE": snippets is not None,
            "--features DIR": features_dir is not None,
        }
    )
    if on_ray and (engine is not None or precision != "fp32"):
        raise click.UsageError(
            "--engine and --precision apply to the local runner; --ray runs TensorFlow in fp32: "
            "drop them or drop --ray"
        )
    snippet_spec = _snippet_spec(snippets, snippet_views, features_dir or out_dir)
    if json_path is not None:
        _refuse_unwritable("--json", json_path, json_path.parent)
    if features_dir is not None:
        _refuse_unwritable("--features", features_dir, features_dir)
    try:
        setup = predict_setup(weights, config)
    except SetupError as error:  # the message names --config or the file itself
        raise click.UsageError(str(error)) from None
    except ValueError as error:  # the weights file is a folder or another network's
        raise click.BadParameter(str(error), param_hint="--weights") from None
    try:
        clip_indices(setup.pipeline.clip_len, view_pipeline(setup.pipeline, views), sampling)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--views") from None
    try:
        choice = choose(engine, precision)
    except CacheFolderError as error:
        raise SettingError(str(error)) from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--engine/--precision") from None
    items = _dataset_items(videos)  # a bad list or folder stops the run before any work
    try:
        names = _class_names(setup, labels)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--labels") from None
    if out_dir is not None:
        _run_dataset(
            items,
            setup,
            weights,
            out_dir,
            DatasetSettings(
                config=setup.pipeline,
                views=views,
                sampling=sampling,
                top=top,
                labels=names,
                snippets=snippet_spec,
                batch_size=batch,
                workers=workers,
                shard_size=shard_size,
                replicas=replicas,
                engine=TENSORFLOW_FP32 if on_ray else choice,
            ),
            quiet,
            "ray" if on_ray else "local",
            ray_address,
        )
        return
    paths = [Path(item.video) for item in items]
    feature_paths = _feature_paths(paths, features_dir, features_format)

    try:
        model = _load_model(setup, weights)
    except KeyboardInterrupt:
        raise Interrupted("interrupted while loading the model: nothing written") from None
    click.echo(choice.describe(), err=True)

    records, failed = [], 0
    for number, path in enumerate(paths, 1):
        status = Status(f"[{number}/{len(paths)}] {path.name}")
        try:
            output = predict_video(
                model,
                path,
                setup.pipeline,
                views=views,
                sampling=sampling,
                top=top,
                labels=names,
                features=features_dir is not None,
                stage_map=stage_map,
                batch_size=batch,
                progress=status.views,
                engine=choice,
            )
            if features_dir is not None:
                along_time = None
                if snippet_spec is not None:
                    along_time = snippet_features(
                        model, path, snippet_spec, setup.pipeline, batch, engine=choice
                    )
                features_dir.mkdir(parents=True, exist_ok=True)
                metadata = {"config": config or setup.source, "sampling": sampling}
                save_features(output, feature_paths[path], metadata, along_time)
        except KeyboardInterrupt:  # what was printed stays; --json is written whole or not
            status.done()
            raise Interrupted(_stopped_line(records, len(paths), failed, json_path)) from None
        except Exception as error:  # one video's failure never stops the rest
            status.done()
            message = video_error(path, error)
            click.secho(f"error: {message}", fg="red", err=True)
            records.append({"video": str(path), "error": message})
            failed += 1
            continue
        status.done()
        click.echo(format_top(output))
        records.append(_json_record(output, weights, config or setup.source, sampling))
    if json_path is not None:
        _write_json(json_path, records)
    if failed:
        click.secho(f"{failed} of {len(paths)} videos failed", fg="red", err=True)
        sys.exit(1)


def expand_videos(arguments: tuple[str, ...]) -> list[Path]:
    """Files as given; folders as their video files (sorted); globs as their matches; list
    files (.txt, .csv, .jsonl) as the videos they list; each video once (the first of those
    with the same resolved path). A missing video stays in the list (it is reported when its
    turn comes).

    Raises:
        click.BadParameter: a folder without videos, a glob without matches.
        ListFileError: a missing list file, one that lists no video or cannot be read.
    """
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise click.BadParameter(
                    f"folder {argument} holds no video files ({', '.join(VIDEO_SUFFIXES)})",
                    param_hint="VIDEO",
                )
            paths.extend(found)
        elif path.suffix in LIST_SUFFIXES and path.is_file():
            paths.extend(Path(item.video) for item in _video_list(path))
        elif not path.exists() and glob.has_magic(argument):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise click.BadParameter(f"no file matches {argument!r}", param_hint="VIDEO")
            paths.extend(Path(match) for match in matches)
        elif path.suffix in LIST_SUFFIXES and not path.exists():
            raise ListFileError(
                f"no such list file: {argument} (a VIDEO ending in {', '.join(LIST_SUFFIXES)} is "
                "a list of videos); check its path"
            )
        else:
            paths.append(path)
    return first_of_each(paths, lambda path: path)


def video_error(path: Path, error: Exception) -> str:
    """The one-line report of a video that failed: a `VideoError`'s own message (it names
    the file), or the file, the exception's type and its first line for anything else."""
    if isinstance(error, VideoError):
        return str(error)
    lines = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return f"{path}: failed while classifying it ({detail}); please report this with the file"


def format_top(output: VideoOutput) -> str:
    """The top-k table of one video, as printed."""
    lines = [f"{output.path}  ({output.num_frames} frames, {output.views} views)"]
    lines.append(f"  {'rank':>4}  {'prob':>7}  {'class':>5}  label")
    for rank, entry in enumerate(output.top, 1):
        lines.append(f"  {rank:>4}  {entry.probability:7.4f}  {entry.index:>5}  {entry.label}")
    return "\n".join(lines)


class Status:
    """A one-line progress display on stderr for one video: its views as they run."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.live = sys.stderr.isatty()
        self._show(f"{prefix}: decoding")

    def views(self, done: int, total: int) -> None:
        self._show(f"{self.prefix}: views {done}/{total}")

    def done(self) -> None:
        if self.live:
            click.echo("\r\033[K", nl=False, err=True)

    def _show(self, text: str) -> None:
        if self.live:
            click.echo(f"\r\033[K{text}", nl=False, err=True)


def _snippet_spec(text: str | None, crops: str, folder: Path | None) -> SnippetSpec | None:
    if text is None:
        return None
    if folder is None:
        raise click.UsageError("--snippets needs --features DIR or --out DIR")
    try:
        return SnippetSpec.parse(text, int(crops))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--snippets") from None


def _refuse_unwritable(option: str, path: Path, folder: Path) -> None:
    """A usage error, before any video runs, when ``folder`` (created later if missing) cannot
    be: the nearest of it and its parents that exists must be a folder this user can write."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        problem = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is read-only for this user"
    else:
        return
    raise click.UsageError(f"{option} {path} cannot be written ({problem}); choose another path")


def _refuse_lone_options(given: dict[str, bool]) -> None:
    """A usage error for the first option of `DEPENDENT_OPTIONS` given on the command line
    without the option it needs (``given``: whether each needed option was given)."""
    context = click.get_current_context()
    for option, (name, needs) in DEPENDENT_OPTIONS.items():
        if context.get_parameter_source(name) is ParameterSource.DEFAULT or given[needs]:
            continue
        raise click.UsageError(
            f"{option} only works with {needs} (it would be ignored); add {needs} or drop {option}"
        )


def _video_list(path: Path) -> list[DatasetItem]:
    try:
        items = read_video_list(path)
    except (ValueError, OSError) as error:
        raise ListFileError(str(error)) from None
    if not items:
        raise ListFileError(
            f"{path} lists no video; write one video path a line (.txt), or a header naming a "
            'video column and a row per video (.csv), or a {"video": PATH} object a line '
            "(.jsonl)"
        )
    return items


def _dataset_items(arguments: tuple[str, ...]) -> list[DatasetItem]:
    """The videos of a run, with the labels of list files; each video once (`first_of_each`)."""
    items: list[DatasetItem] = []
    for argument in arguments:
        if Path(argument).suffix in LIST_SUFFIXES and Path(argument).is_file():
            items.extend(_video_list(Path(argument)))
        else:
            items.extend(DatasetItem(str(path)) for path in expand_videos((argument,)))
    return first_of_each(items, lambda item: item.video)


def _run_dataset(items, setup, weights, out_dir, settings, quiet, runner, ray_address) -> None:
    """``--out``: the dataset runner writes the shards; failures are rows, counted here. Exit
    status 1 if any video failed; on Ctrl-C, `Interrupted` saying what was kept."""
    try:
        model = None if runner == "ray" else _load_model(setup, weights)  # Ray: once per actor
        if model is not None:
            click.echo(settings.engine.describe(), err=True)
        load_model = ModelWeights(setup.model, weights) if model is None else (lambda: model)
        summary = predict_dataset(
            load_model, items, out_dir, settings, runner, None if not quiet else False, ray_address
        )
    except ConnectionError as error:  # no cluster at --ray-address
        raise click.ClickException(str(error)) from None
    except DatasetInterrupted as stop:
        totals = dataset_totals(stop.summary, out_dir)
        raise Interrupted(f"interrupted: {totals}; rerun the same command to resume") from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted while loading the model: nothing written") from None
    totals = f"{dataset_totals(summary, out_dir)}, in {summary.seconds:.1f} s"
    click.secho(totals, fg="red" if summary.failed else None, err=True)
    if summary.failed:
        sys.exit(1)


def _stopped_line(records: list[dict], total: int, failed: int, json_path: Path | None) -> str:
    """What Ctrl-C kept of a run without ``--out``: ``interrupted: 2 of 5 videos classified, 1
    failed; results.json not written`` (``--json`` is written whole at the end, or not)."""
    line = f"interrupted: {len(records) - failed} of {total} videos classified, {failed} failed"
    return line if json_path is None else f"{line}; {json_path} not written"


def dataset_totals(summary: DatasetSummary, out_dir: Path) -> str:
    """A dataset run's counts, as printed: ``3 videos written to results, 1 failed (its row
    holds the error), 2 already complete``."""
    written = f"{summary.complete} video{'' if summary.complete == 1 else 's'} written"
    failed = f"{summary.failed} failed"
    if summary.failed == 1:
        failed += " (its row holds the error)"
    elif summary.failed:
        failed += " (their rows hold the errors)"
    return f"{written} to {out_dir}, {failed}, {summary.skipped} already complete"


def _feature_paths(paths: list[Path], folder: Path | None, fmt: str) -> dict[Path, Path]:
    if folder is None:
        return {}
    targets: dict[Path, Path] = {}
    for path in paths:
        target = folder / f"{path.stem}.{fmt}"
        if target in targets.values():
            raise click.BadParameter(
                f"two videos would write {target}; give videos with different names",
                param_hint="VIDEO",
            )
        targets[path] = target
    return targets


def _class_names(setup: PredictSetup, labels: Path | None) -> list[str] | None:
    """``--labels``, else the class names the weights file records, else the label map the
    config or the file names, else the class numbers (a model with its own classes and no
    label file)."""
    if setup.num_classes is None:
        return None
    if labels is None and setup.class_names is not None:
        return list(setup.class_names)
    source = labels if labels is not None else setup.labels
    if source is None:
        click.echo(NO_CLASS_NAMES, err=True)
        return [str(index) for index in range(setup.num_classes)]
    return load_labels(source, setup.num_classes)


def _load_model(setup: PredictSetup, weights: Path):
    start_tensorflow_quietly()  # before Keras imports TensorFlow (videoswin_tf/startup.py)
    from videoswin_tf.model import TFSwinTransformer3D

    model = TFSwinTransformer3D(**setup.model)
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise click.BadParameter(
            f"{weights} does not load into {setup.source} ({message}); pass the weights "
            "vswin-convert wrote, with the config they were converted with",
            param_hint="--weights",
        ) from None
    return model


def _json_record(output: VideoOutput, weights: Path, config: str, sampling: str) -> dict:
    """``--json``'s record of one video: `VideoOutput.to_json` (views, engine, precision,
    top, probabilities) with the rest a rerun needs, the weights, config and sampling, ahead of
    the long probability vector."""
    record = output.to_json()
    probabilities = record.pop("probabilities")
    run = {"weights": str(weights), "config": config, "sampling": sampling}
    return {**record, **run, "probabilities": probabilities}


def _write_json(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
