"""Release publishing: assets, manifest, model zoo, reproducible bytes, verify.

The default run releases Swin-T alone (the other five sources are missing, which must be
listed, not fatal); `.ci/release-check` does all six at full size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videoswin_tf.convert.configs.resolve import resolve_config
from videoswin_tf.convert.outputs.release import model_zoo, sha256, verify
from videoswin_tf.convert.parity import ParitySettings
from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

VSWIN = str(Path(sys.executable).parent / "vswin-convert")
SMALL_CLIP = ["--parity-frames", "4", "--parity-size", "64"]
T = resolve_config("swin_t_k400")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    save_checkpoint(make_checkpoint(T, "authors", seed=0), folder / T.source)
    (folder / "unrelated.pth").write_bytes(b"not a source")
    return folder


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VSWIN, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def released(sources, tmp_path_factory) -> tuple[Path, Path]:
    """Two release runs, in two processes, of the same sources."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    for folder in (first, second):
        result = run("release", "--from", str(sources), "--to", str(folder), *SMALL_CLIP)
        assert result.returncode == 0, result.stdout + result.stderr
    return first, second


def test_release_writes_asset_manifest_and_zoo(released, sources):
    first, _ = released
    asset = first / f"{T.release}.weights.h5"
    legacy = first / f"{T.release}.h5"  # the seed's file name
    manifest = json.loads((first / "manifest.json").read_text())
    legacy_entry, entry = manifest["assets"]
    assert (legacy_entry["file"], legacy_entry["format"]) == (legacy.name, "keras2-h5")
    assert legacy_entry["sha256"] == sha256(legacy) != sha256(asset)
    assert legacy_entry["bytes"] == legacy.stat().st_size
    assert (entry["file"], entry["format"]) == (asset.name, "keras3")
    assert entry["bytes"] == asset.stat().st_size
    assert entry["sha256"] == sha256(asset)
    assert entry["source"] == T.source and entry["source_sha256"] == sha256(sources / T.source)
    assert entry["config"] == "swin_t_k400" and entry["classes"] == 400
    assert entry["parameters"] == 28_158_070
    assert entry["architecture"]["depths"] == [2, 2, 6, 2]
    assert entry["parity"]["passed"] is True and entry["parity"]["logits"]["max_abs"] < 1e-4
    assert set(manifest["versions"]) == {
        "tensorflow",
        "keras",
        "torch",
        "mmaction2",
        "videoswin-tf",
    }
    assert len(manifest["missing_sources"]) == 5
    assert "swin_base_patch244_window1677_sthv2.pth" in manifest["missing_sources"]

    zoo = (first / "MODEL_ZOO.md").read_text()
    assert (
        f"| Swin-T | IN-1K | 224 | 78.8 | 93.6 | 28M | 87.9G | `configs/swin_t_k400.json` "
        f"| `{legacy.name}` (`{legacy_entry['sha256'][:12]}`)<br>"
        f"`{asset.name}` (`{entry['sha256'][:12]}`) | `swin_t_k400`<br>"
        "`TFVideoSwinT_K400_IN1K_P244_W877_32x224`<br>`videoswin_tiny_kinetics400_classifier`<br>"
        "`videoswin_tiny_kinetics400` |"
    ) in zoo
    assert zoo.count("not released") == 5
    for heading in ("## Kinetics 400", "## Kinetics 600", "## Something-Something V2"):
        assert heading in zoo


def test_two_runs_give_identical_bytes(released):
    first, second = released
    for name in (f"{T.release}.weights.h5", f"{T.release}.h5"):
        assert sha256(first / name) == sha256(second / name)


def test_verify_passes_then_catches_a_flipped_byte(released, sources, tmp_path):
    first, _ = released
    result = run(
        "verify", "--manifest", str(first / "manifest.json"), "--sources", str(sources), *SMALL_CLIP
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all assets verified" in result.stdout and "PASS" in result.stdout
    assert f"[1/2] {T.release}.h5" in result.stdout

    tampered = tmp_path / "tampered"
    shutil.copytree(first, tampered)
    asset = tampered / f"{T.release}.weights.h5"
    data = bytearray(asset.read_bytes())
    data[len(data) // 2] ^= 0x01
    asset.write_bytes(bytes(data))
    result = run("verify", "--manifest", str(tampered / "manifest.json"))
    assert result.returncode == 1
    assert f"FAILED {asset.name}: SHA-256 differs from the manifest" in result.stderr


def test_verify_catches_a_swapped_source(released, tmp_path):
    first, _ = released
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    save_checkpoint(make_checkpoint(T, "authors", seed=1), swapped / T.source)
    failures = verify(
        first / "manifest.json", swapped, ParitySettings(frames=4, size=64), log=lambda _: None
    )
    assert failures == [
        f"{T.release}{suffix}: source {T.source} SHA-256 differs from the manifest"
        for suffix in (".h5", ".weights.h5")
    ]


def test_verify_reports_a_missing_asset(released, tmp_path):
    first, _ = released
    shutil.copy(first / "manifest.json", tmp_path / "manifest.json")
    assert verify(tmp_path / "manifest.json", log=lambda _: None) == [
        f"{T.release}{suffix}: missing from {tmp_path}" for suffix in (".h5", ".weights.h5")
    ]


def test_release_without_any_source_is_an_error(tmp_path):
    result = run("release", "--from", str(tmp_path), "--to", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no official source file in" in result.stderr and T.source in result.stderr
    assert not (tmp_path / "out").exists()


def test_model_zoo_lists_every_name_weights_takes():
    zoo = model_zoo({"assets": []})
    assert zoo.count("not released") == 6
    assert (
        "| Swin-B | K400 | 224 | 69.6 | 92.7 | 89M | 320.6G | `configs/swin_b_ssv2.json` "
        "| not released | `swin_b_ssv2`<br>`TFVideoSwinB_SSV2_K400_P244_W1677_32x224`<br>"
        "`videoswin_base_something_something_v2_classifier`<br>"
        "`videoswin_base_something_something_v2` |"
    ) in zoo


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x80\x02torch", "not UTF-8 text"),
        (b"PK not json", "not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"assets": {}}', "no list of assets"),
    ],
)
def test_verify_of_a_file_that_is_no_manifest_is_one_line(tmp_path, content, reason):
    from click.testing import CliRunner

    from videoswin_tf.convert.cli import main

    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(content)
    result = CliRunner().invoke(main, ["verify", "--manifest", str(manifest)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {manifest}: is not a release manifest ({reason}); pass the manifest.json that "
        "vswin-convert release wrote\n"
    )
