"""``vswin-convert``: mmaction2 Video Swin checkpoints to Keras weights, with a parity gate."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import click

from videoswin_tf.convert.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParitySettings
from videoswin_tf.convert.references.synthetic import LAYOUTS
from videoswin_tf.keras3_h5 import BY_KEY as KERAS3_SOURCES
from videoswin_tf.startup import start_tensorflow_quietly

EXAMPLES = """
\b
Examples:
  vswin-convert --config swin_t_k400 --pth swin_tiny_patch244_window877_kinetics400_1k.pth
  vswin-convert --pth my_finetuned.pth --out checkpoints/mine.weights.h5
  vswin-convert --config swin_t_k400 --pth swin_tiny_patch244_window877_kinetics400_1k.pth \\
      --out TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5    # the seed's name and layout
  vswin-convert --config swin_b_ssv2 --pth swin_base_patch244_window1677_sthv2.pth \\
      --parity-frames 16 --parity-size 112
  SWIN=$(python -c 'import mmaction; print(mmaction.__path__[0])')/.mim/configs/recognition/swin &&
  vswin-convert --pth swin_tiny_patch244_window877_kinetics400_1k.pth \\
      --config "$SWIN/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py"
  vswin-convert --pth swin_tiny_patch4_window7_224.pth --config swin_t_k400   # 2D, inflated
  vswin-convert --pth swin3d_t-7615ae03.pth                                # torchvision
  VIDEOSWIN_SEED_REFERENCE=VideoSwin vswin-convert --pth TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5
  VIDEOSWIN_REWRITE_REFERENCE=VideoSwin vswin-convert \\
      --pth videoswin_tiny_kinetics400_classifier.weights.h5           # the Keras 3 rewrite's
  vswin-convert --pth videoswin_tiny_kinetics400_classifier.keras    # KerasCV's (keras-cv 0.9)
  vswin-convert --pth kerascv_saved_by_keras_3_8.weights.h5 --source kerascv   # no layer names
  vswin-convert to-torch --weights mine.weights.h5 --format mmaction2 --out mine.pth

\b
Sources (--pth), each with parity against the code that wrote it:
  PyTorch files, read by torch's weights_only loader: the authors' Video-Swin .pth,
    mmaction2 1.x's (with or without module. prefixes), a bare state dict, backbone-only or
    float16; torchvision's swin3d_t/s/b (parity: torchvision's model); 2D ImageNet Swin
    (Microsoft's or timm's), inflated to 3D as mmaction2 does, to --config's window and
    patch (default 8x7x7, 2x4x4; parity: mmaction2 inflating the file itself).
  The seed's Keras 2 .h5 (TFVideoSwin*.h5) and SavedModel folders (saved_model.pb,
    variables/): read by structure, the variables only, never the graph; parity: the seed's
    model loading the file (VIDEOSWIN_SEED_REFERENCE: the folder holding its videoswin package).
  The Keras 3 rewrite's (innat/VideoSwin v2) .weights.h5 and .keras: read as data; parity:
    its model loading the file (VIDEOSWIN_REWRITE_REFERENCE: the folder holding its package).
  KerasCV's (keras-cv 0.9) .weights.h5 and .keras: the same way; parity: KerasCV's model.
    Which code wrote a file is read from a .keras archive's config.json or the layer names
    Keras 3.9+ records; a .weights.h5 without names is taken for the rewrite's (--source).
  The file's kind is checked first: torch never sees anything but its own files.

\b
Named configs: swin_t_k400, swin_s_k400, swin_b_k400, swin_b_k400_in22k,
swin_b_k600_in22k, swin_b_ssv2 (see configs/).
"""


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn the converter's own errors into a red message and an exit status: 1 when parity
    or verification fails, 2 for bad input (a traceback would only hide the message)."""
    from videoswin_tf.convert.configs.resolve import ConfigError
    from videoswin_tf.convert.errors import ConversionError, ParityFailure
    from videoswin_tf.convert.outputs.atomic import OutputError
    from videoswin_tf.convert.sources.checkpoint import CheckpointError

    try:
        yield
    except (ConversionError, CheckpointError, ConfigError, OutputError) as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(1 if isinstance(error, ParityFailure) else 2)


def parity_clip_options(command: Callable) -> Callable:
    """Add ``--parity-frames`` and ``--parity-size``, shared by every command that runs parity."""
    command = click.option(
        "--parity-size",
        type=click.IntRange(min=1),
        metavar="S",
        help="Height and width of the parity clip. Default: the config's clip (224).",
    )(command)
    return click.option(
        "--parity-frames",
        type=click.IntRange(min=1),
        metavar="N",
        help="Frames of the parity clip. Default: the config's clip (32).",
    )(command)


@click.group(
    invoke_without_command=True,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--pth",
    type=click.Path(path_type=str),
    help="The checkpoint to convert: a PyTorch .pth (mmaction2's, the authors', torchvision's "
    "or a 2D ImageNet Swin's), the seed's .h5 or SavedModel folder, or the Keras 3 rewrite's "
    "or KerasCV's .weights.h5 or .keras. Its kind is read from the file; Sources, below, says "
    "what each needs.",
)
@click.option(
    "--config",
    "config",
    metavar="NAME|PATH",
    help="A named config (e.g. swin_t_k400), one of our JSON config files, or an mmaction2 "
    "recognition config (.py, _base_ inheritance resolved). Left out: the architecture is "
    "inferred from the checkpoint's tensor shapes. A config that disagrees with the "
    "checkpoint is an error that lists every disagreement.",
)
@click.option(
    "--out",
    type=click.Path(path_type=str),  # a directory is refused by convert, in one line
    help="Weights file to write; the suffix picks the format: .weights.h5 (Keras 3's) or any "
    "other .h5, e.g. the seed's TFVideoSwinT_K400_IN1K_P244_W877_32x224.h5 (the Keras 2 layout, "
    "which Keras 3 loads for such names). Default: "
    "checkpoints/<release name>.weights.h5 (e.g. TFVideoSwinT_K400_IN1K_P244_W877_32x224), "
    "or the .pth file's stem when the config has no release name.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option(
    "--trust-config",
    is_flag=True,
    help="Let mmengine run a .py --config. Without it a .py config is read as data (literals, "
    "dict(), names, _base_ files) and one that needs running (imports, other calls) is refused.",
)
@click.option(
    "--ema",
    is_flag=True,
    help="Convert the averaged (EMA) weights a training run kept beside the regular ones: "
    "mmcv 1.x EMAHook's ema_* buffers or mmengine's ema_state_dict. Without it the regular "
    "weights are converted and the load phase notes that averaged ones exist.",
)
@click.option(
    "--source",
    type=click.Choice(KERAS3_SOURCES),
    help="Which code wrote a Keras 3 .weights.h5 that records no layer names (Keras before "
    "3.9 saved none, so the rewrite's and KerasCV's files are alike): rewrite (the default) "
    "or kerascv. The weights are the same either way; it picks the parity reference. A file "
    "that names its code (a .keras archive, or Keras 3.9+ layer names) refuses another.",
)
@click.option(
    "--no-parity",
    is_flag=True,
    help="Skip the parity check (the upstream reference and the Keras model on one clip).",
)
@parity_clip_options
@click.option(
    "--parity-batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="B",
    help="Clips in the parity batch.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the parity clip.")
@click.option(
    "--atol",
    type=float,
    default=DEFAULT_ATOL,
    show_default=True,
    metavar="X",
    help="Largest absolute logit difference that passes (see README: Parity).",
)
@click.option(
    "--rtol",
    type=float,
    default=DEFAULT_RTOL,
    show_default=True,
    metavar="X",
    help="Largest logit difference, relative to the largest reference logit, that passes.",
)
@click.pass_context
def main(
    ctx: click.Context,
    pth,
    config,
    out,
    force,
    trust_config,
    ema,
    source,
    no_parity,
    parity_frames,
    parity_size,
    parity_batch,
    seed,
    atol,
    rtol,
) -> None:
    """Convert a Video Swin checkpoint (mmaction2's or the authors' .pth, torchvision's,
    ImageNet Swin's, the seed's .h5 or SavedModel folder, the Keras 3 rewrite's or KerasCV's
    files) into a Keras weights file (.weights.h5, or .h5 in the Keras 2 layout) and prove, on
    a seeded random clip, that the Keras model computes what the upstream model computes.

    The phases (load, build, map, write, parity) are printed with their times. Every
    checkpoint tensor must map to exactly one Keras variable; the file is written atomically
    and only when parity passes. The parity report is printed and saved as JSON beside the
    weights. Exit status: 0 on success, 1 when parity fails, 2 for bad input.

    The weights load with plain model.load_weights(path) into the model the config builds.
    """
    if ctx.invoked_subcommand is None and pth is None:
        raise click.UsageError("--pth is required: the checkpoint to convert (see --help)")
    start_tensorflow_quietly()  # before the model package and the configs import TensorFlow
    if ctx.invoked_subcommand is not None:
        return
    from videoswin_tf.convert.converter import convert

    parity = ParitySettings(parity_frames, parity_size, parity_batch, seed, atol, rtol)
    with exit_on_error():
        convert(
            pth,
            config=config,
            out=out,
            force=force,
            parity=None if no_parity else parity,
            log=click.echo,
            trust_config=trust_config,
            ema=ema,
            source=source,
        )


@main.command(short_help="Write test checkpoints made by the upstream reference model.")
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="NAME",
    help="Named config whose architecture and head the checkpoint gets; repeat it for several.",
)
@click.option("--all", "all_configs", is_flag=True, help="Every named config.")
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="authors",
    show_default=True,
    help="Checkpoint layout.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    help="File to write, for a single config. Default: <--to>/<official file name>.",
)
@click.option(
    "--to",
    "folder",
    default="checkpoints",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder to write into.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights.")
@click.option("--force", is_flag=True, help="Overwrite existing files (otherwise kept).")
def synthesize(configs, all_configs, layout, out, folder, seed, force) -> None:
    """Write test checkpoints made by the upstream reference model with a fixed seed, every
    tensor given a distinct, non-trivial value, in the exact layout and file name of the
    published checkpoints. No download needed: `make convert` and `make release` use these.

    \b
    Examples:
      vswin-convert synthesize --config swin_t_k400
      vswin-convert synthesize --all --to checkpoints/sources
    """
    from pathlib import Path

    from videoswin_tf.convert.configs.resolve import named_configs, resolve_config
    from videoswin_tf.convert.outputs.atomic import make_parent_folders
    from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

    with exit_on_error():
        specs = (
            list(named_configs().values())
            if all_configs
            else [resolve_config(name) for name in configs]
        )
    if not specs:
        raise click.UsageError("name a --config, or pass --all")
    if out and len(specs) > 1:
        raise click.UsageError("--out names one file; use --to for several configs")
    for spec in specs:
        path = Path(out) if out else Path(folder) / (spec.source or f"{spec.name}.pth")
        if path.exists() and not force:
            click.echo(f"[synthesize] {path} exists, kept (--force to overwrite)")
            continue
        click.echo(f"[synthesize] {spec.name}, {layout} layout, seed {seed} -> {path}")
        with exit_on_error():
            make_parent_folders(path, "--out" if out else "--to")
        save_checkpoint(make_checkpoint(spec, layout=layout, seed=seed), path)


@main.command(
    name="release", short_help="Convert every named config found in a folder, with checksums."
)
@click.option(
    "--from",
    "sources",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=str),
    help="Folder holding official checkpoints under their official file names.",
)
@click.option(
    "--to",
    "assets",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder for the assets, manifest.json and MODEL_ZOO.md.",
)
@parity_clip_options
@click.option(
    "--pin",
    is_flag=True,
    help="Also write the assets' SHA-256 into the package's videoswin_tf/weights_hashes.json, "
    "the table that tf_video_swin_*(weights=<preset>) checks downloads against (for the "
    "project's own release).",
)
def release_command(sources, assets, parity_frames, parity_size, pin) -> None:
    """Convert every named config whose official .pth is in --from, with parity, into
    --to/<release name>.weights.h5 and --to/<release name>.h5 (the seed's names, Keras 2
    layout); then write manifest.json (sizes, SHA-256 of assets and sources, parity figures,
    package versions) and MODEL_ZOO.md. Missing sources are listed.

    \b
    Example:
      vswin-convert release --from downloads/ --to release/
      vswin-convert release --from downloads/ --to release/ --pin
    """
    from pathlib import Path

    from videoswin_tf.convert.outputs.release import pin_hashes, release

    parity = ParitySettings(frames=parity_frames, size=parity_size)
    with exit_on_error():
        manifest = release(Path(sources), Path(assets), parity, log=click.echo)
    if pin:
        from videoswin_tf.downloads import HASH_TABLE

        table = Path(str(HASH_TABLE))
        pin_hashes(manifest, table)
        click.echo(f"pinned {len(manifest['assets'])} SHA-256 in {table}")


@main.command(name="verify", short_help="Check every asset of a release manifest.")
@click.option(
    "--manifest",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="manifest.json written by release; assets are looked up beside it.",
)
@click.option(
    "--sources",
    type=click.Path(file_okay=False, exists=True, path_type=str),
    help="Folder of official checkpoints: where an asset's source is here, its "
    "checksum is checked and parity is re-run.",
)
@parity_clip_options
def verify_command(manifest, sources, parity_frames, parity_size) -> None:
    """Check every asset in a manifest: size, SHA-256, that it loads into its model, and,
    with --sources, the source checksum and a fresh parity run. Prints one line per failed
    asset and exits 1 if any failed: the check CI runs.

    \b
    Example:
      vswin-convert verify --manifest release/manifest.json --sources downloads/
    """
    from pathlib import Path

    from videoswin_tf.convert.outputs.release import verify

    parity = ParitySettings(frames=parity_frames, size=parity_size)
    with exit_on_error():
        failures = verify(
            Path(manifest), Path(sources) if sources else None, parity, log=click.echo
        )
    for line in failures:
        click.secho(f"FAILED {line}", fg="red", err=True)
    if failures:
        sys.exit(1)
    click.echo("all assets verified")


@main.command(
    name="export", short_help="Export weights as SavedModel, ONNX or OpenVINO IR, checked."
)
@click.option(
    "--weights",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Weights of the --config's model, in any file load_weights reads: a .weights.h5 the "
    "converter wrote, an .h5 in the seed's Keras 2 layout (TFVideoSwin*.h5), the Keras 3 "
    "rewrite's (innat/VideoSwin v2) or KerasCV's (keras-cv 0.9) .weights.h5 or .keras, or a "
    "model.save .keras of this package's model.",
)
@click.option(
    "--config",
    metavar="NAME|PATH",
    help="The model the weights are for: a named config (e.g. swin_t_k400) or a config file, "
    "as for the main command. Default: the model the weights file records (the converter's "
    "files, the seed's .h5, the Keras 3 ports' files); a plain model.save_weights file needs it.",
)
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["saved_model", "onnx", "openvino"]),
    help="saved_model: a folder for TF Serving, signatures serving_default (float clip) and "
    "serve_frames (uint8 RGB frames, normalized inside). onnx: a file for ONNX Runtime. "
    "openvino: a folder with the OpenVINO IR, model.xml and model.bin (float32 weights).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=str),
    help="Folder or file to write; missing folders above it are created.",
)
@click.option(
    "--frames",
    type=click.IntRange(min=1),
    metavar="N",
    help="Frames of the exported clip. Default: the config's clip (32).",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    metavar="S",
    help="Height and width of the exported clip. Default: the config's clip (224).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="B",
    help="Clips per call, fixed in the signature.",
)
@click.option(
    "--any-batch",
    is_flag=True,
    help="Accept any number of clips per call instead (attention then runs on all windows at "
    "once, without the cache-sized chunks a fixed batch gets: slower on CPUs).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an earlier export at --out (an ONNX file, or a folder holding saved_model.pb "
    "or model.xml); any other file or folder there is never replaced.",
)
def export_command(weights, config, fmt, out, frames, size, batch, any_batch, force) -> None:
    """Export converted weights as a SavedModel, an ONNX file or an OpenVINO IR, then run the
    export and the Keras model on the same seeded clip: the export is kept only when their
    logits differ by at most 1e-4. Exit status: 0 done, 1 parity failed, 2 bad input.

    \b
    Examples:
      vswin-convert export --config swin_t_k400 --format saved_model \\
          --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
          --out exports/swin_t_k400
      vswin-convert export --config swin_t_k400 --format onnx --out exports/swin_t.onnx \\
          --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
          --frames 16 --any-batch
      vswin-convert export --config swin_t_k400 --format openvino \\
          --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
          --out exports/swin_t_k400_openvino
    """
    from videoswin_tf.convert.outputs.export import export

    clip = ParitySettings(frames=frames, size=size, batch=batch)
    with exit_on_error():
        export(weights, config, fmt, out, clip, any_batch=any_batch, force=force, log=click.echo)


@main.command(
    name="to-torch", short_help="Write Keras weights back as a PyTorch checkpoint, checked."
)
@click.option(
    "--weights",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The weights file to write back: a .weights.h5 the converter wrote, the seed's .h5, "
    "or the Keras 3 rewrite's (innat/VideoSwin v2) or KerasCV's (keras-cv 0.9) .weights.h5 or "
    ".keras file, read as data by structure. The model is the one the file records (for the "
    "Keras 3 ports', the one its shapes give).",
)
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["mmaction2", "torchvision"]),
    help="mmaction2: keys of mmaction2's Recognizer3D under 'state_dict' (backbone.*, "
    "cls_head.*). torchvision: a bare state dict for torchvision's swin3d_t/s/b "
    "(SwinTransformer3d); needs a head.",
)
@click.option("--out", required=True, type=click.Path(path_type=str), help="The .pth to write.")
@click.option(
    "--config",
    metavar="NAME|PATH",
    help="The model of a --weights file that records none, such as a fine-tuned model's plain "
    "model.save_weights: a named config (swin_t_k400, ...) or a config file, as for the main "
    "command. Not needed (and not used) for files that record their model.",
)
@click.option("--no-parity", is_flag=True, help="Skip the upstream model's parity run.")
@parity_clip_options
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
def to_torch_command(
    weights, fmt, out, config, no_parity, parity_frames, parity_size, force
) -> None:
    """Write converted weights back as a PyTorch checkpoint (plain tensors: it loads with
    torch.load(..., weights_only=True)). The file is read back by the converter's own reader,
    which must give every tensor bit for bit, and the upstream model loaded with it
    (strict=True) must match the Keras model's logits on the seeded parity clip: for mmaction2,
    the Recognizer3D mmaction2's registry builds from its own Swin config, as its tools do;
    for torchvision, SwinTransformer3d. Otherwise nothing is written. Exit status: 0 done,
    1 parity failed, 2 bad input.

    \b
    Examples:
      vswin-convert to-torch --format mmaction2 \\
          --weights checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5 \\
          --out swin_t_k400.pth
      vswin-convert to-torch --format torchvision --weights mine.weights.h5 --out mine.pth \\
          --parity-frames 16 --parity-size 112
      vswin-convert to-torch --format mmaction2 --weights finetuned.weights.h5 \\
          --config swin_t_k400 --out finetuned.pth   # a plain model.save_weights file
    """
    start_tensorflow_quietly()
    from videoswin_tf.convert.outputs.torch_checkpoint import to_torch

    parity = ParitySettings(frames=parity_frames, size=parity_size)
    with exit_on_error():
        to_torch(
            weights,
            fmt,
            out,
            force=force,
            parity=None if no_parity else parity,
            log=click.echo,
            config=config,
        )
