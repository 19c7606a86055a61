"""Fine-tune a Video Swin backbone with a new classifier, on videos generated here.

The videos show one square moving across a noisy background; the class is the direction it moves
(right, left, down, up), so a model must look at time to tell them apart. The recipe is the one a
real data set would use:

- the backbone from a converted or inflated weights file (``vswin-convert`` wrote it with
  ``include_top=False``; ``--weights``, with ``--config`` naming its architecture), or a fresh
  one;
- a new ``Dense`` classifier on the pooled features;
- AdamW with layer-wise learning-rate decay (`LayerwiseDecayAdamW`: the classifier learns at the
  full rate, each block below it ``--layer-decay`` times slower);
- ``model.fit`` on a ``tf.data`` pipeline (uint8 clips normalised on the fly, shuffled, batched,
  prefetched); ``--mixed-precision`` for bfloat16 compute where the CPU or GPU has it;
- ``--devices N`` trains data-parallel over N devices: ``tf.distribute.MirroredStrategy`` on
  TensorFlow (N logical CPU devices when there are no GPUs), ``keras.distribution.DataParallel``
  on JAX (``KERAS_BACKEND=jax``; N host CPU devices when there are no accelerators);
- the result saved as a ``.keras`` file and loaded back.

``--check-data-parallel`` runs one step on one device and the same step split over ``--devices``
and prints how far the updated weights are apart.

Examples:
    python examples/finetune.py --out checkpoints/directions.keras
    python examples/finetune.py \\
        --weights checkpoints/swin_tiny_patch4_window7_224_backbone.weights.h5 \\
        --config swin_t_k400 --frames 16 --size 64
    python examples/finetune.py --devices 2 --check-data-parallel
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

DIRECTIONS = ("right", "left", "down", "up")
STEPS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}  # (dy, dx) per frame
MEAN = np.array([123.675, 116.28, 103.53], "float32")
STD = np.array([58.395, 57.12, 57.375], "float32")
# A fresh backbone when no --config names one: small enough to train in a minute on a CPU.
SMALL_BACKBONE = {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8)}


def moving_squares(count: int, frames: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips ``(count, frames, size, size, 3)`` uint8 and their labels (indices into
    `DIRECTIONS`, balanced): a square of random side and colour moving 1 to 2 pixels a frame."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 60, (count, frames, size, size, 3), dtype=np.uint8)
    labels = np.arange(count) % len(DIRECTIONS)
    rng.shuffle(labels)
    for clip, label in zip(clips, labels, strict=False):
        side = int(rng.integers(size // 6, size // 4 + 1))
        speed = float(rng.uniform(1.0, 2.0))
        travel = int(np.ceil(speed * (frames - 1)))
        dy, dx = STEPS[DIRECTIONS[label]]
        # the start leaves room for the whole path inside the frame
        low = [travel if d < 0 else 0 for d in (dy, dx)]
        high = [size - side - (travel if d > 0 else 0) for d in (dy, dx)]
        y0, x0 = (int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high, strict=False))
        colour = rng.integers(150, 256, 3, dtype=np.uint8)
        for t in range(frames):
            y, x = round(y0 + dy * speed * t), round(x0 + dx * speed * t)
            clip[t, y : y + side, x : x + side] = colour
    return clips, labels


def dataset(clips: np.ndarray, labels: np.ndarray, batch: int, shuffle: bool, seed: int = 0):
    """A ``tf.data`` pipeline of normalised float32 clips ``(B, T, H, W, 3)`` and labels."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((clips, labels))
    if shuffle:
        data = data.shuffle(len(clips), seed=seed, reshuffle_each_iteration=True)
    normalise = lambda x, y: ((tf.cast(x, tf.float32) - MEAN) / STD, y)  # noqa: E731
    return data.batch(batch).map(normalise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def layer_depths(variable_paths: list[str], depths: tuple[int, ...]) -> list[int]:
    """Each variable's layer id for layer-wise decay: 0 the patch embedding, 1.. the blocks in
    order (a stage's patch merging with its last block), ``sum(depths) + 1`` the final norm and
    anything outside the backbone (the new classifier)."""
    starts = np.cumsum((0, *tuple(depths)))
    top = int(starts[-1]) + 1
    ids = []
    for path in variable_paths:
        block = re.search(r"backbone/layers_(\d+)/blocks_(\d+)/", path)
        stage = re.search(r"backbone/layers_(\d+)/", path)
        if "backbone/patch_embed/" in path:
            ids.append(0)
        elif block:
            ids.append(int(starts[int(block[1])]) + int(block[2]) + 1)
        elif stage:
            ids.append(int(starts[int(stage[1]) + 1]))
        else:
            ids.append(top)
    return ids


def make_optimizer_class():
    """`LayerwiseDecayAdamW`, defined once Keras is imported."""
    import keras

    @keras.saving.register_keras_serializable(package="videoswin_examples")
    class LayerwiseDecayAdamW(keras.optimizers.AdamW):
        """AdamW whose learning rate for each variable is scaled by
        ``decay ** (top - layer_id)`` (see `layer_depths`), so that layers near the input,
        which hold the most general features, move least.

        Args:
            depths: blocks per stage of the backbone.
            layer_decay: the factor per layer (1.0: no decay).
            **kwargs: AdamW's arguments.
        """

        def __init__(self, depths=(2, 2, 6, 2), layer_decay=0.75, **kwargs):
            super().__init__(**kwargs)
            self.depths = tuple(depths)
            self.layer_decay = layer_decay

        def build(self, variables):
            super().build(variables)
            ids = layer_depths([v.path for v in variables], self.depths)
            top = sum(self.depths) + 1
            self._scales = [self.layer_decay ** (top - i) for i in ids]

        def update_step(self, gradient, variable, learning_rate):
            scale = self._scales[self._get_variable_index(variable)]
            return super().update_step(gradient, variable, learning_rate * scale)

        def get_config(self):
            return {
                **super().get_config(),
                "depths": list(self.depths),
                "layer_decay": self.layer_decay,
            }

    return LayerwiseDecayAdamW


def build_classifier(
    args, backbone_kwargs: dict, drop_path_rate: float, steps: int = 1, optimizer=None
):
    """The backbone (``include_top=False``, weights from ``--weights`` if given) under a new
    Dense classifier, compiled with ``optimizer``; by default `LayerwiseDecayAdamW` on a cosine
    schedule of ``steps`` with one epoch of linear warm-up."""
    import keras

    from videoswin_tf import TFSwinTransformer3D

    backbone = TFSwinTransformer3D(
        **backbone_kwargs, drop_path_rate=drop_path_rate, include_top=False, name="backbone"
    )
    inputs = keras.Input((args.frames, args.size, args.size, 3), name="clip")
    features = backbone(inputs)  # (B, C_last)
    if args.weights:
        backbone.load_weights(args.weights)
    logits = keras.layers.Dense(len(DIRECTIONS), dtype="float32", name="classifier")(features)
    model = keras.Model(inputs, logits, name="direction_classifier")
    optimizer = optimizer or make_optimizer_class()(
        depths=backbone_kwargs["depths"],
        layer_decay=args.layer_decay,
        learning_rate=keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(steps - steps // args.epochs, 1),
            warmup_target=args.learning_rate,
            warmup_steps=steps // args.epochs,
        ),
        weight_decay=0.05,
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def backbone_arguments(config: str | None) -> dict:
    """The backbone's architecture: the named or JSON config's, or `SMALL_BACKBONE`."""
    if config is None:
        return {**SMALL_BACKBONE, "window_size": (8, 7, 7), "patch_size": (2, 4, 4)}
    from videoswin_tf.convert.configs.resolve import resolve_config

    spec = resolve_config(config)
    return {
        "embed_dim": spec.embed_dim,
        "depths": spec.depths,
        "num_heads": spec.num_heads,
        "window_size": spec.window_size,
        "patch_size": spec.patch_size,
    }


@dataclasses.dataclass
class Replicas:
    """Where training runs: ``scope()`` wraps building, compiling and fitting the model.

    Attributes:
        devices: the device names, one per replica.
        scope: a context manager factory (a ``tf.distribute`` strategy's or a Keras
            distribution's scope).
    """

    devices: list[str]
    scope: Callable[[], contextlib.AbstractContextManager]


def data_parallel(devices: int) -> Replicas:
    """``devices`` replicas: on TensorFlow ``tf.distribute.MirroredStrategy`` over GPUs, or over
    as many logical CPU devices; on JAX ``keras.distribution.DataParallel`` (host CPU devices
    come from ``--xla_force_host_platform_device_count``, set in `main`)."""
    import keras

    if devices == 1:
        return Replicas(["default device"], contextlib.nullcontext)
    if keras.backend.backend() == "jax":
        names = keras.distribution.list_devices()[:devices]
        return Replicas(names, keras.distribution.DataParallel(devices=names).scope)
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) < devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
        names = [f"/cpu:{i}" for i in range(devices)]
    else:
        names = [f"/gpu:{i}" for i in range(devices)]
    strategy = tf.distribute.MirroredStrategy(names)
    return Replicas(list(strategy.extended.worker_devices), strategy.scope)


def check_data_parallel(args, backbone_kwargs: dict) -> float:
    """One training step on one device and on ``args.devices``, from the same weights on the
    same batch; the largest difference between the updated weights.

    The step is plain SGD: Adam's first step moves each weight by about ``lr * sign(gradient)``,
    which turns float noise in a near-zero gradient into a full step, whereas SGD's update is
    the gradient itself, so the comparison shows how the replicas' gradients were combined.
    """
    import keras

    parallel = data_parallel(args.devices)
    clips, labels = moving_squares(args.batch, args.frames, args.size, args.seed)
    batch = dataset(clips, labels, args.batch, shuffle=False)
    updated = []
    initial = None
    for replicas in (data_parallel(1), parallel):
        with replicas.scope():
            model = build_classifier(
                args, backbone_kwargs, 0.0, optimizer=keras.optimizers.SGD(args.learning_rate * 10)
            )
            if initial is None:
                initial = model.get_weights()
            model.set_weights(initial)
            model.fit(batch, epochs=1, shuffle=False, verbose=0)
            updated.append(model.get_weights())
    moved = max(float(np.abs(a - b).max()) for a, b in zip(updated[0], initial, strict=False))
    apart = max(float(np.abs(a - b).max()) for a, b in zip(*updated, strict=False))
    print(
        f"{keras.backend.backend()}: one step on 1 device and on {len(parallel.devices)} devices "
        f"({', '.join(parallel.devices)}): weights moved up to {moved:.3e}, "
        f"the two results differ by at most {apart:.3e}"
    )
    return apart


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (examples/finetune.py) for the recipe.",
    )
    parser.add_argument("--weights", help="backbone .weights.h5 written by vswin-convert")
    parser.add_argument("--config", help="named or JSON config of --weights' architecture")
    parser.add_argument("--videos", type=int, default=384, help="training videos (default 384)")
    parser.add_argument("--val-videos", type=int, default=128, help="validation videos")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--size", type=int, default=32, help="height and width (default 32)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16, help="global batch size")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--layer-decay", type=float, default=0.75)
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute")
    parser.add_argument("--devices", type=int, default=1, help="data-parallel replicas")
    parser.add_argument("--check-data-parallel", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="checkpoints/finetuned_directions.keras")
    args = parser.parse_args(argv)
    if args.weights and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: no such file")

    if os.environ.get("KERAS_BACKEND") == "jax" and args.devices > 1:
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    import keras

    keras.utils.set_random_seed(args.seed)
    backbone_kwargs = backbone_arguments(args.config)
    if args.check_data_parallel:
        return 0 if check_data_parallel(args, backbone_kwargs) < 1e-5 else 1
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")

    replicas = data_parallel(args.devices)
    train = moving_squares(args.videos, args.frames, args.size, args.seed)
    val = moving_squares(args.val_videos, args.frames, args.size, args.seed + 1)
    with replicas.scope():
        steps = args.epochs * -(-args.videos // args.batch)
        model = build_classifier(args, backbone_kwargs, drop_path_rate=0.1, steps=steps)
        print(
            f"{model.count_params():,} parameters; {args.videos} training and "
            f"{args.val_videos} validation videos of {args.frames}x{args.size}x{args.size}; "
            f"{len(replicas.devices)} replica(s)"
        )
        start = time.perf_counter()
        history = model.fit(
            dataset(*train, args.batch, shuffle=True, seed=args.seed),
            validation_data=dataset(*val, args.batch, shuffle=False),
            epochs=args.epochs,
            shuffle=False,  # the pipeline shuffles
            verbose=2,
        )
    accuracy = history.history["val_accuracy"][-1]
    print(f"validation accuracy {accuracy:.1%} after {time.perf_counter() - start:.0f} s")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    reloaded = keras.models.load_model(out)
    clips = dataset(*val, args.batch, shuffle=False).take(1).get_single_element()[0]
    difference = float(
        np.abs(reloaded.predict(clips, verbose=0) - model.predict(clips, verbose=0)).max()
    )
    print(f"saved {out}; reloaded, its logits differ by {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
