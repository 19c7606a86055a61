"""`VideoSwinVideoClassifier`: a `VideoSwinBackbone` with the I3D head, in keras-hub's Task role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from videoswin_tf import hub
from videoswin_tf.backbone import VideoSwinBackbone
from videoswin_tf.engine import PredictEngine
from videoswin_tf.layers.head import I3DHead
from videoswin_tf.video_converter import VideoSwinVideoConverter


@keras.saving.register_keras_serializable(package="videoswin_tf")
class VideoSwinVideoClassifier(PredictEngine, keras.Model):
    """Video classification: mmaction2's ``Recognizer3D`` at test time (backbone, then the
    I3D head: mean over ``D, H, W``, dropout, linear). `predict` picks its engine itself
    (`videoswin_tf.engine.PredictEngine`).

    Args:
        backbone: a `VideoSwinBackbone`.
        num_classes: classes of the head.
        class_names: name of each class (``num_classes`` of them), or ``None``.
        head_dropout: dropout before the linear layer, active in training only.
        preprocessor: the `VideoSwinVideoConverter` of the checkpoint (normalisation and test
            pipeline); ``None`` for mmaction2's ImageNet normalisation and no known pipeline.
            ``call`` does not apply it: apply ``classifier.preprocessor`` to 0-255 frames
            first, as keras-hub tasks leave preprocessing to their data pipeline.

    Call arguments:
        x: normalised clip ``(B, T, H, W, 3)``, channels last (``preprocessor(frames)``).
        training: enables dropout and stochastic depth.

    Returns:
        logits ``(B, num_classes)`` in float32 (the head keeps float32 under mixed precision).
    """

    def __init__(
        self,
        backbone: VideoSwinBackbone,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        head_dropout: float = 0.5,
        preprocessor: VideoSwinVideoConverter | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but the head has {num_classes} "
                "classes; pass one name per class, or None"
            )
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names = None if class_names is None else list(class_names)
        self.head_dropout = head_dropout
        self.preprocessor = preprocessor or VideoSwinVideoConverter()
        self.head = I3DHead(
            num_classes,
            backbone.num_features,
            dropout_rate=head_dropout,
            name="cls_head",
            dtype=backbone.dtype_policy.variable_dtype,
        )
        self.head.build((None, None, None, None, backbone.num_features))
        self.built = True

    def call(self, x, training=None):
        features = self.backbone.stage_features(x, training=training)[-1]  # (B, D, H, W, C)
        return self.head(features, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "head_dropout": self.head_dropout,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VideoSwinVideoClassifier:
        config = dict(config)
        for key in ("backbone", "preprocessor"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Load this classifier's own ``*.weights.h5``, or a ``TFSwinTransformer3D`` file
        (``*.weights.h5`` or the seed's ``*.h5``) whose head has ``num_classes`` classes.

        Raises:
            videoswin_tf.WeightsMismatchError: a ``TFSwinTransformer3D`` file that records
                another model (window, sizes, patch or head), named with the call that fits.
        """
        hub.load_classifier_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    @classmethod
    def from_preset(cls, preset: str, **kwargs) -> VideoSwinVideoClassifier:
        """A classifier with its weights, class names and preprocessor.

        Args:
            preset: a published preset name (``"swin_t_k400"``, see
                ``VideoSwinVideoClassifier.presets``), downloaded once and checked against its
                published SHA-256; a local preset directory (`save_to_preset`); or
                ``"hf://<org>/<name>"`` on the Hugging Face Hub (the ``hf`` extra).
            **kwargs: arguments to override; another ``num_classes`` keeps the backbone's
                weights and puts a new head (random, no class names) on it.

        Raises:
            ValueError: ``preset`` is none of these, or a preset directory lacks a file.
        """
        return hub.classifier_from_preset(cls, preset, kwargs)

    def save_to_preset(self, preset_dir: str) -> None:
        """Write a preset directory in keras-hub's layout: the backbone's ``config.json``,
        ``model.weights.h5``, ``metadata.json``, and ``task.json``, ``task.weights.h5`` (the
        head) and ``preprocessor.json``."""
        hub.save_classifier(self, preset_dir)

    # The published presets by handle (the name `from_preset` takes): {handle: Preset}.
    presets = hub.PublishedPresets()
