"""``vswin-predict``: classify and embed videos with a converted Video Swin checkpoint."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

try:
    import click
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"vswin-predict needs click ({error}); install it with: pip install videoswin-tf[video]"
    ) from error

from videoswin_tf.labels import load_labels
from videoswin_tf.presets import presets
from videoswin_tf.startup import start_tensorflow_quietly
from videoswin_tf.video.decode import VideoError
from videoswin_tf.video.features_file import FORMATS, save_features
from videoswin_tf.video.model_setup import PredictSetup, predict_setup
from videoswin_tf.video.predict import DEFAULT_BATCH, VideoOutput, predict_video, view_pipeline
from videoswin_tf.video.sampling import PROTOCOLS, clip_indices

# File endings a folder argument is searched for.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")

EXAMPLES = """
\b
Examples:
  vswin-predict clip.mp4 --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
      --config swin_t_k400
  vswin-predict videos/ --weights W.weights.h5 --config swin_t_k400 --views 1x1 --json out.json
  vswin-predict 'clips/*.webm' --weights W.weights.h5 --config swin_b_ssv2 --features feats/
  vswin-predict clip.mp4 --weights ucf101.weights.h5 --labels ucf101.txt

\b
Models with their own classes: the weights file records the model vswin-convert converted
(architecture, window, head), so --config may be left out; give --labels for class names.

\b
Protocols: K400/K600 configs score 4 clips x 3 crops (4x3), SSv2 1x3, as the checkpoints
were evaluated; --views 1x1 (one centre crop of one clip) is 12 times faster.
"""


@click.command(
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("videos", nargs=-1, required=True, metavar="VIDEO...")
@click.option(
    "--weights",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Keras weights (.weights.h5) converted by vswin-convert; the model they record is built.",
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
    help="Clips x crops per video: 4x3, 1x3 or 1x1 (centre crop). Default: the config's protocol.",
)
@click.option(
    "--sampling",
    type=click.Choice(PROTOCOLS),
    default="vswin",
    show_default=True,
    help="Clip offsets: vswin (the Video-Swin test mode the checkpoints were scored with) or "
    "mmaction2 (1.x test mode: clips from the first to the last frame).",
)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, metavar="K")
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class names, one per line, line i for class i. Default: the label map of the config "
    "or the one the weights file records, else the class numbers.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results here: per video its frames, views, top classes and the full "
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
) -> None:
    """Classify videos (and optionally save their features) as the checkpoints were scored:
    count the frames, decode those the clips use, resize the short side, crop the views,
    softmax per view, average over views, and print the top classes.

    VIDEO is a file, a folder (its video files) or a quoted glob. A video that cannot be read
    or fails in any other way is reported on one line and the others still run; the exit
    status is 1 if any failed, 2 for bad options.
    """
    try:
        setup = predict_setup(weights, config)
        clip_indices(setup.pipeline.clip_len, view_pipeline(setup.pipeline, views), sampling)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if stage_map and features_dir is None:
        raise click.UsageError("--stage-map needs --features DIR")
    paths = expand_videos(videos)
    feature_paths = _feature_paths(paths, features_dir, features_format)

    try:
        names = _class_names(setup, labels)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--labels") from None
    model = _load_model(setup, weights)

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
            )
            if features_dir is not None:
                features_dir.mkdir(parents=True, exist_ok=True)
                metadata = {"config": config or setup.source, "sampling": sampling}
                save_features(output, feature_paths[path], metadata)
        except Exception as error:  # one video's failure never stops the rest
            status.done()
            message = video_error(path, error)
            click.secho(f"error: {message}", fg="red", err=True)
            records.append({"video": str(path), "error": message})
            failed += 1
            continue
        status.done()
        click.echo(format_top(output))
        records.append(output.to_json())
    if json_path is not None:
        _write_json(json_path, records)
    if failed:
        click.secho(f"{failed} of {len(paths)} videos failed", fg="red", err=True)
        sys.exit(1)


def expand_videos(arguments: tuple[str, ...]) -> list[Path]:
    """Files as given; folders as their video files (sorted); globs as their matches. A
    missing file stays in the list (it is reported when its turn comes)."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise click.BadParameter(
                    f"folder {argument} holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                )
            paths.extend(found)
        elif not path.exists() and glob.has_magic(argument):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise click.BadParameter(f"no file matches {argument!r}")
            paths.extend(Path(match) for match in matches)
        else:
            paths.append(path)
    return paths


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


def _feature_paths(paths: list[Path], folder: Path | None, fmt: str) -> dict[Path, Path]:
    if folder is None:
        return {}
    targets: dict[Path, Path] = {}
    for path in paths:
        target = folder / f"{path.stem}.{fmt}"
        if target in targets.values():
            raise click.BadParameter(
                f"two videos would write {target}; give videos with different names"
            )
        targets[path] = target
    return targets


def _class_names(setup: PredictSetup, labels: Path | None) -> list[str] | None:
    """``--labels``, else the label map the config or the file names, else the class numbers
    (a model with its own classes and no label file)."""
    if setup.num_classes is None:
        return None
    source = labels if labels is not None else setup.labels
    if source is None:
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


def _write_json(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
