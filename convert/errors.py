"""The converter's own errors; `videoswin_tf.convert.cli` turns them into exit statuses.

Reading errors live beside their readers (`ConfigError`, `OutputError`), but for
`CheckpointError`, which every checkpoint reader and `sources.file_kind` raise.
"""


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message names the file, what is wrong and what
    to do."""


class ConversionError(Exception):
    """A conversion that cannot go on; the message says what is wrong and what to do."""


class ParityFailure(ConversionError):
    """The Keras model does not compute what the reference computes, within tolerance."""
