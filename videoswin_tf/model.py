"""`TFSwinTransformer3D`: the Video Swin Transformer backbone with its I3D head, in one model.

The compatibility API of the seed (its builders return it); new code can use
`videoswin_tf.VideoSwinBackbone` and `videoswin_tf.VideoSwinVideoClassifier`, built from the
same layers, with the same variables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras

from videoswin_tf import weights_file
from videoswin_tf.architectures import DEFAULT_PATCH, DEFAULT_WINDOW
from videoswin_tf.backbone import INPUT_LAYOUT, VideoSwinBackbone, validate_clip
from videoswin_tf.engine import PredictEngine
from videoswin_tf.layers.head import I3DHead

__all__ = ["INPUT_LAYOUT", "TFSwinTransformer3D", "validate_clip"]


@keras.saving.register_keras_serializable(package="videoswin_tf")
class TFSwinTransformer3D(PredictEngine, VideoSwinBackbone):
    """Video Swin Transformer (Liu et al., 2021), computing what mmaction2's
    ``SwinTransformer3D`` followed by its ``I3DHead`` computes.

    Every variable exists as soon as the model is constructed, so ``load_weights`` works before
    the first call. Frames, height and width are free at call time: sizes that are not
    multiples of the patch or window are zero-padded, and windows shrink on axes smaller than
    them, as in the reference. `predict` picks its engine itself (`PredictEngine`).

    Args:
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
            drop_rate, attn_drop_rate, drop_path_rate, norm_layer, patch_norm: the backbone's,
            as `VideoSwinBackbone` documents them (the seed's names, order and defaults).
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
        patch_size: Sequence[int] = DEFAULT_PATCH,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] = DEFAULT_WINDOW,
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
        # Set before the backbone's __init__, which builds the model: `build` adds the head.
        self.num_classes = num_classes
        self.include_top = include_top
        self.head_dropout = head_dropout
        super().__init__(
            patch_size=patch_size,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            patch_norm=patch_norm,
            **kwargs,
        )
        if in_channels is not None and in_channels != self.num_features:
            raise ValueError(
                f"in_channels={in_channels} does not match the backbone, whose last stage has "
                f"embed_dim * 2**{len(self.depths) - 1} = {self.num_features} channels; pass "
                f"in_channels={self.num_features} or leave it out"
            )
        if class_names is not None and (not include_top or len(class_names) != num_classes):
            head = f"{num_classes} classes" if include_top else "no head (include_top=False)"
            raise ValueError(
                f"class_names has {len(class_names)} names but the model has {head}; pass one "
                "name per class of the head, or None"
            )
        self.class_names = None if class_names is None else list(class_names)

    def build(self, input_shape):
        super().build(input_shape)
        self.head = None
        if self.include_top:
            self.head = I3DHead(
                self.num_classes,
                self.num_features,
                dropout_rate=self.head_dropout,
                name="cls_head",
                dtype=self.dtype_policy.variable_dtype,
            )
            self.head.build((None, None, None, None, self.num_features))

    def call(self, x, training=None):
        if self.head is None:
            return super().call(x, training=training)
        backbone_out = self.stage_features(x, training=training)[-1]  # (B, D, H, W, C)
        return self.head(backbone_out, training=training)

    def compute_output_shape(self, input_shape):
        width = self.num_classes if self.include_top else self.num_features
        return (input_shape[0], width)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
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
        # Keras' own loader, not the backbone's (which maps whole-model files onto a backbone)
        keras_load = functools.partial(keras.Model.load_weights, self)
        weights_file.load_weights(self, filepath, keras_load, skip_mismatch, **kwargs)
