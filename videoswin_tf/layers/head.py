"""The I3D classification head."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="videoswin_tf")
class I3DHead(keras.layers.Layer):
    """Average over ``D, H, W``, dropout (training only), then a linear classifier.

    Args:
        num_classes: output classes.
        in_channels: channels ``C`` of the backbone output.
        dropout_rate: dropout before the classifier (0.5 in mmaction2's head).

    Call arguments:
        x: ``(B, D, H, W, C)``.

    Returns:
        logits ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int, in_channels: int, dropout_rate: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout_rate = dropout_rate
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout", dtype=self.dtype_policy)
        self.fc_cls = keras.layers.Dense(num_classes, name="fc_cls", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc_cls.build((None, self.in_channels))

    def call(self, x, training=None):
        x = ops.mean(x, axis=(1, 2, 3))  # (B, C)
        return self.fc_cls(self.dropout(x, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "dropout_rate": self.dropout_rate,
        }
