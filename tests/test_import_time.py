"""Importing the model package has no side effects; the console scripts start TensorFlow
quietly by the TF_CPP_MIN_LOG_LEVEL rule of videoswin_tf/startup.py."""

import ast
import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

import videoswin_tf

PACKAGES = ("videoswin_tf", "videoswin_tf.video", "videoswin_tf.layers")
HEAVY = ("tensorflow", "keras", "numpy", "h5py", "torch", "cv2", "av")
SCRIPTS = Path(sys.executable).parent

# TensorFlow's C++ start-up lines: absl's notice, and log lines such as
# "I0000 00:00:1795979582.791718   10009 port.cc:153] oneDNN custom operations are on...".
START_UP = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]", re.MULTILINE)


def run(command: list[str], level: str | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")
    }
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_importing_the_packages_loads_nothing_heavy_and_leaves_fd_2_alone():
    code = textwrap.dedent(
        f"""
        import os, sys
        before = os.fstat(2)
        def refuse(*args):
            raise AssertionError("an import touched a file descriptor")
        os.dup = os.dup2 = refuse
        for name in {PACKAGES!r}:
            __import__(name)
        after = os.fstat(2)
        assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert done.stderr == ""


def test_public_names_resolve_on_first_use():
    from videoswin_tf import WeightsMismatchError, tf_video_swin_tiny
    from videoswin_tf.layers import WindowAttention3D
    from videoswin_tf.video import predict_video

    assert tf_video_swin_tiny.__module__ == "videoswin_tf.builders"
    assert WeightsMismatchError.__module__ == "videoswin_tf.weights_file"
    assert WindowAttention3D.__module__ == "videoswin_tf.layers.attention"
    assert predict_video.__module__ == "videoswin_tf.video.predict"
    assert "tf_video_swin_tiny" in dir(videoswin_tf) and "TFSwinTransformer3D" in dir(videoswin_tf)
    with pytest.raises(AttributeError, match=r"^module 'videoswin_tf' has no attribute 'nope'$"):
        videoswin_tf.nope  # noqa: B018


def test_presets_stays_the_function_after_its_module_is_imported():
    importlib.import_module("videoswin_tf.presets")
    assert callable(videoswin_tf.presets)
    assert "swin_t_k400" in videoswin_tf.presets()


def type_checking_imports(package: str) -> dict[str, tuple[str, ...]]:
    """Module -> names of the ``if TYPE_CHECKING:`` imports in the package's __init__."""
    tree = ast.parse(Path(importlib.import_module(package).__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If))
    assert ast.unparse(block.test) == "TYPE_CHECKING"
    return {node.module: tuple(a.name for a in node.names) for node in block.body}


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_table_type_checking_block_and_all_name_the_same_names(package):
    module = importlib.import_module(package)
    lazy = {name for names in module._LAZY.values() for name in names}
    checked = type_checking_imports(package)
    assert {m: set(n) for m, n in checked.items()} == {m: set(n) for m, n in module._LAZY.items()}
    eager = {"get_preset", "presets"} if package == "videoswin_tf" else set()
    assert set(module.__all__) == lazy | eager
    for name in module.__all__:
        assert getattr(module, name) is not None


@pytest.fixture(scope="module")
def tensorflow_prints_start_up_lines(tmp_path_factory):
    """Whether TensorFlow on its own prints start-up lines here at TF_CPP_MIN_LOG_LEVEL=0."""
    code = "import tensorflow as tf; tf.config.list_physical_devices()"
    done = run([sys.executable, "-c", code], "0", tmp_path_factory.mktemp("tf"))
    return START_UP.search(done.stderr) is not None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")
    (folder / "clip.mp4").write_bytes(b"")
    # This package's group names but no weights: refused only by Keras, once TensorFlow runs.
    with h5py.File(folder / "junk.weights.h5", "w") as file:
        file.create_group("patch_embed3d")
    return folder


# (command, whether it imports TensorFlow, what it must still print on stderr)
COMMANDS = {
    "predict-help": (["vswin-predict", "--help"], False, ""),
    "convert-help": (["vswin-convert", "--help"], False, ""),
    "convert-export-help": (["vswin-convert", "export", "--help"], True, ""),
    "predict-model": (
        ["vswin-predict", "clip.mp4", "--weights", "junk.weights.h5", "--config", "swin_t_k400"],
        True,
        "Error: Invalid value for --weights: junk.weights.h5 does not load into swin_t_k400",
    ),
}


@pytest.mark.parametrize("level", [None, "0", "3"], ids=["unset", "0", "3"])
@pytest.mark.parametrize("name", COMMANDS)
def test_console_scripts_follow_the_log_level_rule(
    name, level, workdir, tensorflow_prints_start_up_lines
):
    command, imports_tensorflow, message = COMMANDS[name]
    done = run([str(SCRIPTS / command[0]), *command[1:]], level, workdir)
    assert done.returncode == (2 if message else 0), done.stderr
    assert message in done.stderr  # stderr is back once TensorFlow has started
    if level == "0" and imports_tensorflow:
        if not tensorflow_prints_start_up_lines:
            pytest.skip("TensorFlow prints no start-up lines on this machine")
        assert START_UP.search(done.stderr), done.stderr
    else:
        assert START_UP.search(done.stderr) is None, done.stderr
        if not message:
            assert done.stderr == ""


def test_a_keras_file_loads_once_a_model_name_is_used(tmp_path):
    """Keras finds the classes of a .keras file only once they are registered, which importing
    their module does: after ``import videoswin_tf`` alone, loading is refused (README,
    Importing and logging); after the first use of a model name it works."""
    from videoswin_tf import TFSwinTransformer3D

    path = tmp_path / "m.keras"
    model = TFSwinTransformer3D(embed_dim=8, depths=(1, 1), num_heads=(1, 1), num_classes=3)
    model.save(path)
    code = textwrap.dedent(
        f"""
        import keras, videoswin_tf
        try:
            keras.saving.load_model({str(path)!r})
        except TypeError as error:
            print(str(error).split(". ")[0])
        videoswin_tf.TFSwinTransformer3D
        print(type(keras.saving.load_model({str(path)!r})).__name__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Could not locate class 'TFSwinTransformer3D'",
        "TFSwinTransformer3D",
    ]
