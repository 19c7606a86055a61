"""`TFSwinTransformer3D`: the Video Swin Transformer backbone with its I3D head."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from videoswin_tf import weights_file
from videoswin_tf.layers.head import I3DHead
from videoswin_tf.layers.norm import build_norm, norm_config
from videoswin_tf.layers.patch_embed import PatchEmbed3D
from videoswin_tf.layers.stage import SwinStage

INPUT_LAYOUT = "(batch, frames, height, width, 3), channels last"


@keras.saving.register_keras_serializable(package="videoswin_tf")
class TFSwinTransformer3D(keras.Model):
    """Video Swin Transformer (Liu et al., 2021), computing what mmaction2's
    ``SwinTransformer3D`` followed by its ``I3DHead`` computes.

    Every variable exists as soon as the model is constructed, so ``load_weights`` works before
    the first call. Frames, height and width are free at call time: sizes that are not
    multiples of the patch or window are zero-padded, and windows shrink on axes smaller than
    them, as in the reference.

    Args:
        patch_size: ``(Pd, Ph, Pw)`` of the patch embedding.
        embed_dim: channels ``C`` of stage 0; stage ``i`` has ``C * 2**i``.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window ``(Wd, Wh, Ww)``.
        mlp_ratio: MLP hidden channels over block channels.
        qkv_bias: learn a bias for query, key and value.
        qk_scale: query scale; ``None`` for ``head_dim ** -0.5``.
        drop_rate: dropout after the patch embedding, in projections and MLPs.
        attn_drop_rate: dropout of the attention weights.
        drop_path_rate: stochastic depth of the last block; rates grow linearly from 0.
        norm_layer: ``None`` (LayerNormalization, epsilon 1e-5), a factory such as
            ``functools.partial(keras.layers.LayerNormalization, epsilon=1e-5)``, or the
            config dict that `get_config` stores.
        patch_norm: normalize the patch tokens.
        in_channels: channels the head receives, ``embed_dim * 2**(len(depths) - 1)``;
            ``None`` to derive it.
        num_classes: classes of the head.
        include_top: end with the I3D head (logits); otherwise return pooled features.
        head_dropout: dropout before the classifier, active in training only.
        class_names: name of each class of the head (``num_classes`` of them), or ``None``;
            kept as ``model.class_names`` and in the config. The builders fill it from a
            preset's label map (``weights="swin_t_k400"``).

    Call arguments:
        x: clip ``(B, T, H, W, 3)``, channels last, already normalized.
        training: enables dropout and stochastic depth.

    Returns:
        logits ``(B, num_classes)`` in float32 with the head; otherwise pooled features
        ``(B, C_last)``. `stage_features` gives the four stage feature maps.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = (2, 4, 4),
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] = (8, 7, 7),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_layer: Any = None,
        patch_norm: bool = True,
        in_channels: int | None = None,
        num_classes: int = 400,
        include_top: bool = True,
        head_dropout: float = 0.5,
        class_names: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(depths) != len(num_heads):
            raise ValueError(
                f"depths {list(depths)} and num_heads {list(num_heads)} must have one entry "
                "per stage"
            )
        num_features = embed_dim * 2 ** (len(depths) - 1)
        if in_channels is not None and in_channels != num_features:
            raise ValueError(
                f"in_channels={in_channels} does not match the backbone, whose last stage has "
                f"embed_dim * 2**{len(depths) - 1} = {num_features} channels; pass "
                f"in_channels={num_features} or leave it out"
            )
        self.patch_size = tuple(patch_size)
        self.embed_dim = embed_dim
        self.depths = list(depths)
        self.num_heads = list(num_heads)
        self.window_size = tuple(window_size)
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.norm_layer = norm_config(norm_layer)
        self.patch_norm = patch_norm
        self.num_features = num_features
        self.num_classes = num_classes
        self.include_top = include_top
        self.head_dropout = head_dropout
        if class_names is not None and (not include_top or len(class_names) != num_classes):
            head = f"{num_classes} classes" if include_top else "no head (include_top=False)"
            raise ValueError(
                f"class_names has {len(class_names)} names but the model has {head}; pass one "
                "name per class of the head, or None"
            )
        self.class_names = None if class_names is None else list(class_names)

        self.patch_embed = PatchEmbed3D(
            self.patch_size,
            embed_dim,
            norm_layer=self.norm_layer,
            patch_norm=patch_norm,
            name="patch_embed",
            dtype=self.dtype_policy,
        )
        self.pos_drop = keras.layers.Dropout(drop_rate, name="pos_drop", dtype=self.dtype_policy)
        block_rates = np.linspace(0.0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = []
        for index, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            first = sum(self.depths[:index])
            self.stages.append(
                SwinStage(
                    embed_dim * 2**index,
                    depth,
                    heads,
                    window_size=self.window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=block_rates[first : first + depth],
                    norm_layer=self.norm_layer,
                    downsample=index < len(self.depths) - 1,
                    name=f"layers_{index}",
                    dtype=self.dtype_policy,
                )
            )
        self.norm = build_norm(self.norm_layer, "norm", self.dtype_policy)
        self.head = (
            I3DHead(
                num_classes,
                num_features,
                dropout_rate=head_dropout,
                name="cls_head",
                dtype=self.dtype_policy.variable_dtype,
            )
            if include_top
            else None
        )
        self.build((None, None, None, None, 3))

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        for index, stage in enumerate(self.stages):
            stage.build((None, None, None, None, self.embed_dim * 2**index))
        self.norm.build((None, None, None, None, self.num_features))
        if self.head is not None:
            self.head.build((None, None, None, None, self.num_features))

    def stage_features(self, x, training=None) -> list:
        """The four stage feature maps, for dense tasks.

        Stage ``i`` gives ``(B, D, H_i, W_i, embed_dim * 2**i)``: its blocks' output before
        patch merging; the last one after the final norm (the backbone output). With the
        ``(2, 4, 4)`` patch, ``D = ceil(T / 2)`` and ``H_i = ceil(H / 2**(i + 2))`` (each
        merging rounds up).

        Args:
            x: clip ``(B, T, H, W, 3)``.
            training: enables dropout and stochastic depth.
        """
        validate_clip(x)
        x = self.pos_drop(self.patch_embed(x), training=training)
        features = []
        for stage in self.stages:
            stage_out, x = stage(x, training=training)
            features.append(stage_out)
        features[-1] = self.norm(features[-1])
        return features

    def call(self, x, training=None):
        backbone_out = self.stage_features(x, training=training)[-1]  # (B, D, H, W, C)
        if self.head is None:
            return ops.mean(backbone_out, axis=(1, 2, 3))
        return self.head(backbone_out, training=training)

    def compile(self, *args, jit_compile="auto", **kwargs):
        """Keras' ``compile``; with ``jit_compile="auto"`` (the default) `predict` still
        chooses its engine itself (see `make_predict_function`)."""
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        self._engine_chosen_by_user = jit_compile != "auto"

    def make_predict_function(self, force=False):
        """Keras' predict function, compiled with XLA where that is the faster engine.

        On the TensorFlow backend, unless ``compile(jit_compile=...)`` chose, XLA is used
        when `videoswin_tf.engine.xla_for_predict` says so (measured: it depends on whether
        TensorFlow runs oneDNN's kernels on this CPU); the choice is in `predict_engine`.
        Training and evaluation keep Keras' own choice.
        """
        if keras.backend.backend() != "tensorflow" or getattr(
            self, "_engine_chosen_by_user", False
        ):
            return super().make_predict_function(force)
        from videoswin_tf.engine import xla_for_predict

        kept = self._jit_compile
        self._jit_compile = xla_for_predict()
        try:
            return super().make_predict_function(force)
        finally:
            self._jit_compile = kept

    @property
    def predict_engine(self) -> str:
        """What `predict` runs on: ``"eager"``, ``"graph"`` or ``"xla"`` (TensorFlow), or the
        backend's own compiled path (``"jit"``)."""
        if self.run_eagerly:
            return "eager"
        if keras.backend.backend() != "tensorflow":
            return "jit" if self.jit_compile else "eager"
        if getattr(self, "_engine_chosen_by_user", False):
            return "xla" if self.jit_compile else "graph"
        from videoswin_tf.engine import xla_for_predict

        return "xla" if xla_for_predict() else "graph"

    def compute_output_shape(self, input_shape):
        width = self.num_classes if self.include_top else self.num_features
        return (input_shape[0], width)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "norm_layer": self.norm_layer,
            "patch_norm": self.patch_norm,
            "in_channels": self.num_features,
            "num_classes": self.num_classes,
            "include_top": self.include_top,
            "head_dropout": self.head_dropout,
            "class_names": self.class_names,
        }

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Keras' ``load_weights``, after checking the config that files written by this
        package record (window, width, depth, heads, patch, head): a file for another model
        raises `videoswin_tf.weights_file.WeightsMismatchError` naming each difference and the
        builder call that fits the file. ``*.weights.h5``, the seed's own ``*.h5`` files and
        this package's load (`videoswin_tf.weights_file.load_weights`)."""
        weights_file.load_weights(self, filepath, super().load_weights, skip_mismatch, **kwargs)


def validate_clip(x) -> None:
    """Raise a `ValueError` unless ``x`` is a clip ``(B, T, H, W, 3)`` with known, non-zero
    frames, height and width."""
    shape = tuple(x.shape)
    if len(shape) != 5:
        raise ValueError(
            f"expected a video clip of rank 5 laid out as {INPUT_LAYOUT}, got rank "
            f"{len(shape)} with shape {shape}; add a batch axis for a single clip"
        )
    if shape[-1] != 3:
        raise ValueError(
            f"expected 3 channels last, as {INPUT_LAYOUT}, got shape {shape}; a clip in "
            "PyTorch's (batch, 3, frames, height, width) needs a transpose to (0, 2, 3, 4, 1)"
        )
    if any(size is None for size in shape[1:4]):
        raise ValueError(
            f"frames, height and width must be known when the model runs, got {shape} "
            f"({INPUT_LAYOUT}); give them in the traced input signature, or call the model "
            "on a real clip"
        )
    if 0 in shape:
        raise ValueError(f"got an empty clip of shape {shape}; expected {INPUT_LAYOUT}")
