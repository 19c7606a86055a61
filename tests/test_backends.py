"""The model tests again, on Keras's other backends.

PyTorch is installed anyway (the converter needs it), so its run is part of the default suite,
except the tests in `LONG_ON_TORCH`: they run on torch in `make test-slow`. JAX is optional:
`make test-slow` installs the ``jax`` extra and runs it (CI does).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The model's tests, and the backbone/classifier pair's.
MODEL_TESTS = ("test_model.py", "test_backbone_classifier.py")
# Their tests that build full-size models (Swin-T to Swin-L) or start a second process: on the
# torch backend they take most of the run (torch initialises and runs full-size models several
# times slower than TensorFlow here). The same tests run on TensorFlow in `make test`, and the
# small models' tests cover the torch code paths; on torch these run in `make test-slow`.
LONG_ON_TORCH = (
    "test_trainable_parameters_equal_the_reference",  # six full-size models, Swin-L among them
    "test_backbone_only_has_no_head_parameters",  # Swin-T
    "test_head_in_channels_must_match_the_backbone",  # Swin-T, for an error
    "test_seed_snippet_runs_as_written",  # Swin-T twice, on a 32x224x224 clip
    "test_from_preset_on_a_published_name",  # Swin-T K400 twice, and a backbone
    "test_from_preset_on_hf_offline",  # a second process importing torch and Keras
)


def run_model_tests(backend: str, selection: str | None = None) -> None:
    """Run `MODEL_TESTS` under ``KERAS_BACKEND=backend``, those ``-k selection`` picks if given."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    probe = subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == backend
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(str(Path(__file__).with_name(name)) for name in MODEL_TESTS),
            *(["-k", selection] if selection else []),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_model_tests_pass_on_the_torch_backend():
    pytest.importorskip("torch")
    run_model_tests("torch", f"not ({' or '.join(LONG_ON_TORCH)})")


def test_the_long_tests_are_model_tests():
    """A renamed test must not drop out of both torch runs unnoticed."""
    source = "".join(Path(__file__).with_name(name).read_text() for name in MODEL_TESTS)
    assert [name for name in LONG_ON_TORCH if f"\ndef {name}(" not in source] == []


@pytest.mark.slow
def test_the_long_model_tests_pass_on_the_torch_backend():
    pytest.importorskip("torch")
    run_model_tests("torch", " or ".join(LONG_ON_TORCH))


@pytest.mark.slow
def test_model_tests_pass_on_the_jax_backend():
    pytest.importorskip("jax", reason="install the jax extra: pip install -e '.[jax]'")
    run_model_tests("jax")


def run_on_backend(tmp_path, script: str, env: dict, depths, num_heads, clip_shape):
    """Build a small seeded backbone on TensorFlow, save its weights and a clip, run ``script``
    (argv: weights, output .npy, clip .npy) in a process with ``env``; returns the process,
    TensorFlow's output and the backend's (``None`` if the process failed)."""
    import keras
    import numpy as np

    from videoswin_tf import TFSwinTransformer3D

    keras.utils.set_random_seed(0)
    model = TFSwinTransformer3D(
        embed_dim=32,
        depths=depths,
        num_heads=num_heads,
        window_size=(2, 7, 7),
        num_classes=None,
        include_top=False,
    )
    clip = np.random.default_rng(0).standard_normal(clip_shape).astype(np.float32)
    expected = np.asarray(model.predict_on_batch(clip))
    weights, out, clip_file = (tmp_path / name for name in ("w.weights.h5", "out.npy", "clip.npy"))
    model.save_weights(weights)
    np.save(clip_file, clip)
    run = subprocess.run(
        [sys.executable, "-c", script, str(weights), str(out), str(clip_file)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    return run, expected, np.load(out) if run.returncode == 0 else None


# Run under KERAS_BACKEND=openvino: a backbone with shifted windows (a 2x16x16 stage-0 map in
# 7x7 windows) on a clip whose batch Keras' OpenVINO backend leaves unknown while tracing.
OPENVINO_SCRIPT = """
import sys
import numpy as np
from videoswin_tf import TFSwinTransformer3D
model = TFSwinTransformer3D(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                            window_size=(2, 7, 7), num_classes=None, include_top=False)
model.load_weights(sys.argv[1])
np.save(sys.argv[2], np.asarray(model.predict_on_batch(np.load(sys.argv[3]))))
"""


def test_the_model_runs_on_the_openvino_backend(tmp_path):
    """Keras' OpenVINO backend compiles at OpenVINO's default precision: bf16 on CPUs with
    native bf16 (this package cannot ask it for f32), so the bound is bf16's there."""
    pytest.importorskip("openvino", reason="install the openvino extra")
    import numpy as np

    from videoswin_tf.inference import has_native_bf16

    env = {"KERAS_BACKEND": "openvino", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run, expected, got = run_on_backend(
        tmp_path, OPENVINO_SCRIPT, env, (2, 2, 2, 2), (1, 2, 4, 8), (2, 4, 64, 64, 3)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    difference = np.abs(got - expected).max()
    assert difference <= (5e-2 if has_native_bf16() else 1e-4), difference
    assert np.abs(expected).max() > 0.1


# Run under KERAS_BACKEND=torch with inductor's freezing: the backbone (both stages, a shifted
# block in each, patch merging) must trace as one graph, then compile and match TensorFlow.
TORCH_COMPILE_SCRIPT = """
import sys
import numpy as np
import torch
from videoswin_tf import TFSwinTransformer3D
model = TFSwinTransformer3D(embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=(2, 7, 7),
                            num_classes=None, include_top=False)
model.load_weights(sys.argv[1])
clip = np.load(sys.argv[3])
with torch.no_grad():
    explained = torch._dynamo.explain(model.predict_step)(torch.from_numpy(clip))
print(explained.graph_count, explained.graph_break_count)
torch._dynamo.reset()
model.compile(jit_compile=True)
with torch.no_grad():
    np.save(sys.argv[2], np.asarray(model.predict_on_batch(clip)))
"""


@pytest.mark.slow
def test_the_model_compiles_as_one_graph_on_the_torch_backend(tmp_path):
    """Keras' ``jit_compile=True`` on torch (``torch.compile``, README "Keras backends"): one
    graph, no breaks, and TensorFlow's logits (about 3 minutes, most of it inductor's C++)."""
    pytest.importorskip("torch")
    import numpy as np

    env = {
        "KERAS_BACKEND": "torch",
        "TORCHINDUCTOR_FREEZING": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "OMP_NUM_THREADS": "1",
    }
    run, expected, got = run_on_backend(
        tmp_path, TORCH_COMPILE_SCRIPT, env, (2, 2), (1, 2), (1, 4, 56, 56, 3)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-2:] == ["1", "0"]  # graphs, graph breaks
    difference = np.abs(got - expected).max()
    assert difference <= 1e-5, difference
    assert np.abs(expected).max() > 0.1


# Run under KERAS_BACKEND=torch: the backbone (both stages, a shifted block in each, patch
# merging) exported and compiled ahead of time (benchmarks/torch_aoti.py); prints how many
# linears inductor's freezing packed, then each linear kernel of the compiled graph and its count.
TORCH_AOTI_SCRIPT = """
import sys, json
from pathlib import Path
import numpy as np
import torch
from torch._dynamo.utils import counters
from torch_aoti import compile_ahead_of_time
from videoswin_tf import TFSwinTransformer3D
model = TFSwinTransformer3D(embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=(2, 7, 7),
                            num_classes=None, include_top=False)
model.load_weights(sys.argv[1])
kernels = {}
def count(graph):
    for node in graph.nodes:
        if node.op == "call_function" and "linear" in str(node.target):
            kernels[str(node.target)] = kernels.get(str(node.target), 0) + 1
clip = torch.from_numpy(np.load(sys.argv[3]))
compiled = compile_ahead_of_time(model, clip, Path(sys.argv[2]).with_suffix(".pt2"),
                                 post_grad_custom_post_pass=count)
print(counters["inductor"]["mkldnn_linear_weight_pack_matcher_count"], json.dumps(kernels))
np.save(sys.argv[2], np.asarray(compiled.run(clip)))
"""


@pytest.mark.slow
def test_the_model_compiled_ahead_of_time_on_torch_runs_onednn_linears(tmp_path):
    """The torch route of README "Keras backends" (``torch.export``, AOTInductor with freezing):
    every Dense layer (4 in each of the 4 blocks, patch merging's reduction) is oneDNN's fp32
    linear, not MKL's, and the logits are TensorFlow's (about 2 minutes, most of it C++)."""
    pytest.importorskip("torch")
    import numpy as np

    env = {
        "KERAS_BACKEND": "torch",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "benchmarks"),  # torch_aoti
    }
    run, expected, got = run_on_backend(
        tmp_path, TORCH_AOTI_SCRIPT, env, (2, 2), (1, 2), (1, 4, 56, 56, 3)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    packed, kernels = run.stdout.splitlines()[-1].split(" ", 1)
    assert (packed, kernels) == ("17", '{"mkldnn._linear_pointwise.default": 17}')
    assert got.shape == expected.shape == (1, 64)  # pooled features
    difference = np.abs(got - expected).max()
    assert difference <= 1e-5, difference
    assert np.abs(expected).max() > 0.1
