"""The converter's own errors; `videoswin_tf.convert.cli` turns them into exit statuses.

Reading errors live beside their readers (`CheckpointError`, `ConfigError`, `OutputError`).
"""


class ConversionError(Exception):
    """A conversion that cannot go on; the message says what is wrong and what to do."""


class ParityFailure(ConversionError):
    """The Keras model does not compute what the reference computes, within tolerance."""
