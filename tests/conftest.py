import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from videoswin_tf.convert.mapping.spec import ModelSpec

# Imported by the tests (`from conftest import SMALL_SPEC`): a model small enough to build and
# run in well under a second, with every feature of the full ones: four stages, shifted and
# unshifted blocks, a head, head_dim 32.
SMALL_SPEC = ModelSpec(
    name="small",
    embed_dim=32,
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 4, 8),
    window_size=(2, 3, 3),
    num_classes=10,
    clip_frames=4,
    clip_size=32,
)
