"""``vswin-convert --help``: every example is a command a shell runs and the CLI accepts, two of
them convert files the tests make, and the --pth help is short with its details in the epilog."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import h5py
import pytest
from convert_runs import convert_cli

from videoswin_tf.convert.cli import EXAMPLES, main
from videoswin_tf.convert.configs.resolve import resolve_config

MMACTION2_CONFIG = "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py"


def example_block() -> str:
    """The lines under "Examples:" in the epilog, as a shell script."""
    lines = EXAMPLES.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line.strip() for line in lines.splitlines())


def example_commands() -> list[list[str]]:
    """Each example run by bash (the venv's python first on PATH), with vswin-convert a shell
    function that prints the arguments the shell gives it: the commands as a user's shell
    expands them."""
    capture = "vswin-convert() { printf '%s\\0' \"$@\"; printf '\\n'; }\n"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", capture + example_block()],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return [line.split("\0")[:-1] for line in done.stdout.splitlines()]


def split_commands() -> list[list[str]]:
    """Each example as a POSIX shell splits it (shlex; comments, continuations and leading
    ``NAME=value`` settings dropped), ``$SWIN`` standing for the folder of mmaction2's Swin
    configs, found here without importing mmaction2 (1 s or more): the fast stand-in for
    `example_commands`, which a slow test checks it against."""
    package = importlib.util.find_spec("mmaction").submodule_search_locations[0]
    swin = str(Path(package) / ".mim/configs/recognition/swin")
    commands = []
    for line in example_block().replace("\\\n", " ").splitlines():
        if line.startswith("SWIN="):  # bash runs it in the slow test
            continue
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words.pop(0)
        if words:
            assert words[0] == "vswin-convert", line
            commands.append([word.replace("$SWIN", swin) for word in words[1:]])
    return commands


def parsed(argv: list[str]) -> click.Context:
    """The context click makes of ``argv`` (a subcommand's when one is named); raises click's
    usage errors for an unknown option or a bad choice."""
    if argv[0] in main.commands:
        parent = main.make_context("vswin-convert", [])
        return main.commands[argv[0]].make_context(argv[0], argv[1:], parent=parent)
    return main.make_context("vswin-convert", list(argv))


def test_every_example_parses_and_names_a_config_that_resolves():
    commands = split_commands()
    assert len(commands) == 12  # 13 example lines, one of them setting SWIN
    configs = []
    for argv in commands:
        context = parsed(argv)
        assert context.params.get("pth") or context.params.get("weights"), argv
        if context.params.get("config"):
            configs.append(context.params["config"])
    assert configs[3] == str(
        Path(__import__("mmaction").__file__).parent
        / ".mim/configs/recognition/swin"
        / MMACTION2_CONFIG
    )
    assert [resolve_config(config).name for config in configs] == [
        "swin_t_k400",
        "swin_t_k400",
        "swin_b_ssv2",
        "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
        "swin_t_k400",
    ]
    assert ["--source", "kerascv"] in [argv[-2:] for argv in commands]
    assert not any("path/to" in argument for argv in commands for argument in argv)


def test_pth_help_is_short_and_the_sources_are_in_the_epilog():
    result = convert_cli("--help")
    assert result.exit_code == 0
    option = next(p for p in main.params if p.name == "pth")
    assert len(option.help) < 300 and option.help.endswith("Sources, below, says what each needs.")
    assert "Sources (--pth), each with parity against the code that wrote it:" in result.output


@pytest.mark.slow  # about 45 s under load: Swin-T and KerasCV's small model, each with parity
def test_two_examples_convert_files_the_tests_make(tmp_path, monkeypatch):
    """The mmaction2-config example on a Swin-T checkpoint made by the reference model, and
    the --source kerascv example on a KerasCV file saved without layer names, run as printed
    (plus a small parity clip) in a folder holding files of the names they use."""
    from test_kerascv_weights import PARITY

    from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

    monkeypatch.chdir(tmp_path)
    spec = resolve_config("swin_t_k400")
    save_checkpoint(make_checkpoint(spec, layout="authors", seed=0), tmp_path / spec.source)
    kerascv = tmp_path / "kerascv"
    kerascv.mkdir()
    _save_kerascv_without_names(kerascv / "classifier.weights.h5")
    shutil.copy(kerascv / "classifier.weights.h5", "kerascv_saved_by_keras_3_8.weights.h5")
    commands = example_commands()
    assert commands == split_commands()  # what bash runs: the fast test's commands
    by_config = next(c for c in commands if any(a.endswith(MMACTION2_CONFIG) for a in c))
    by_source = next(c for c in commands if c[-2:] == ["--source", "kerascv"])
    for argv, clip in (
        (by_config, ("--parity-frames", "4", "--parity-size", "64")),
        (by_source, PARITY),
    ):
        result = convert_cli(*argv, *clip)
        assert result.exit_code == 0, result.output
        assert "PASS" in result.output


def _save_kerascv_without_names(path: Path) -> None:
    """A KerasCV classifier's weights, saved as Keras before 3.9 saved them (no layer names)."""
    import keras_cv
    from test_kerascv_weights import ARCH, CLASSES, INPUT
    from weight_stress import stress

    backbone = keras_cv.models.VideoSwinBackbone(input_shape=INPUT, **ARCH)
    classifier = keras_cv.models.VideoClassifier(backbone=backbone, num_classes=CLASSES)
    stress(classifier, 0)
    classifier.save_weights(str(path))
    with h5py.File(path, "r+") as file:  # visititems stops at the first non-None return
        file.visititems(lambda name, item: item.attrs.pop("name", None) and None)


def test_the_mmaction2_config_example_stops_where_python_lacks_mmaction(tmp_path):
    """A ``python`` on PATH that cannot import mmaction (a shell outside the venv): the example
    that sets SWIN stops there instead of passing ``/.mim/configs/...`` to vswin-convert."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"No module named 'mmaction'\" >&2\nexit 1\n")
    python.chmod(0o755)
    capture = "vswin-convert() { printf '%s\\0' \"$@\"; printf '\\n'; }\n"
    done = subprocess.run(
        ["bash", "-c", capture + example_block()],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
    )
    commands = [line.split("\0")[:-1] for line in done.stdout.splitlines()]
    assert len(commands) == 11  # the 12 of split_commands but the one using $SWIN
    assert not any(argument.endswith(MMACTION2_CONFIG) for argv in commands for argument in argv)
    assert done.stderr == "No module named 'mmaction'\n"
