"""The presets (``videoswin_tf.presets``) and label maps agree with the converter's configs."""

import pytest
from videoswin_tf.convert.configs.resolve import named_configs

from videoswin_tf.labels import SHIPPED_LABELS, load_labels
from videoswin_tf.presets import get_preset, presets

# name: (labels, views, frame_uniform); docs/reference.md, "Test-time pipeline".
EXPECTED = {
    "swin_b_k400": ("k400", "4x3", False),
    "swin_b_k400_in22k": ("k400", "4x3", False),
    "swin_b_k600_in22k": ("k600", "4x3", False),
    "swin_b_ssv2": ("sthv2", "1x3", True),
    "swin_s_k400": ("k400", "4x3", False),
    "swin_t_k400": ("k400", "4x3", False),
}


def test_presets_are_the_named_configs():
    specs = named_configs()
    assert list(presets()) == sorted(EXPECTED)
    for name, preset in presets().items():
        spec = specs[name]
        assert (preset.arch, preset.window_size, preset.patch_size) == (
            spec.arch,
            spec.window_size,
            spec.patch_size,
        )
        assert (preset.num_classes, preset.release) == (spec.num_classes, spec.release)
        labels, views, uniform = EXPECTED[name]
        assert (preset.labels, preset.pipeline.views, preset.pipeline.frame_uniform) == (
            labels,
            views,
            uniform,
        )
        assert (preset.pipeline.clip_len, preset.pipeline.frame_interval) == (32, 2)
        assert preset.pipeline.short_side == preset.pipeline.crop_size == 224
        assert len(load_labels(preset.labels, preset.num_classes)) == preset.num_classes


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'swin_x'; presets: swin_b_k400, "):
        get_preset("swin_x")


@pytest.mark.parametrize(
    "name, count, first, last",
    [
        ("k400", 400, "abseiling", "zumba"),
        ("k600", 600, "abseiling", "zumba"),
        (
            "sthv2",
            174,
            "Approaching something with your camera",
            "Wiping something off of something",
        ),
    ],
)
def test_shipped_label_maps(name, count, first, last):
    names = load_labels(name)
    assert (len(names), names[0], names[-1]) == (count, first, last)
    assert name in SHIPPED_LABELS


def test_own_label_file_and_its_errors(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("walking\nrunning\n\n")
    assert load_labels(path, 2) == ["walking", "running"]
    with pytest.raises(ValueError, match=r"has 2 class names but the model has 3 classes"):
        load_labels(path, 3)
    with pytest.raises(ValueError, match="is neither a shipped one"):
        load_labels(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="holds no class names"):
        load_labels(tmp_path / "empty.txt")
