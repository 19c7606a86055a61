import json
import os
import signal
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory) -> Path:
    """`SMALL_SPEC` with the distinctive state of seed 0 (`references.synthetic`: every weight
    its own value), saved as ``small.weights.h5``."""
    from videoswin_tf.convert.mapping.rules import assign
    from videoswin_tf.convert.mapping.spec import build_keras_model
    from videoswin_tf.convert.references.synthetic import distinctive_state

    state = {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}
    model = build_keras_model(SMALL_SPEC)
    assign(model, state)
    path = tmp_path_factory.mktemp("weights") / "small.weights.h5"
    model.save_weights(str(path))
    return path


@pytest.fixture(autouse=True)
def sigint_handler_kept():
    """Every test leaves Ctrl-C's handler as it found it: ``vswin-predict`` ignores SIGINT once
    Ctrl-C stops it (its process is ending), which in this process would also make the
    processes later tests start ignore it (they inherit SIG_IGN)."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def published_presets(tmp_path, monkeypatch) -> Path:
    """A hash table (`videoswin_tf.downloads.HASH_TABLE`) with a SHA-256 for every preset's
    file, as `vswin-convert release --pin` writes it once a release is published: every
    preset's weights can then be fetched (`downloads.can_fetch`). The table's path."""
    from videoswin_tf import downloads
    from videoswin_tf.presets import presets

    table = tmp_path / "weights_hashes.json"
    names = [downloads.preset_file_name(preset) for preset in presets().values()]
    table.write_text(json.dumps({"sha256": dict.fromkeys(names, "0" * 64)}))
    monkeypatch.setattr(downloads, "HASH_TABLE", table)
    monkeypatch.delenv(downloads.MANIFEST_VARIABLE, raising=False)
    return table
