"""The presets (``videoswin_tf.presets``) and label maps agree with the converter's configs."""

import pytest

from videoswin_tf.convert.configs.resolve import named_configs
from videoswin_tf.labels import SHIPPED_LABELS, load_labels
from videoswin_tf.presets import get_preset, lookup, presets
from videoswin_tf.pretrained import model_arguments, resolve

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


# Each preset's names in the seed's release (October 2023 `<name>.h5`) and in its Keras 3
# rewrite's (innat/VideoSwin v2.0 MODEL_ZOO.md: `<name>_classifier.weights.h5` and, backbone
# alone, `<name>.weights.h5`).
KNOWN_NAMES = {
    "swin_t_k400": ("TFVideoSwinT_K400_IN1K_P244_W877_32x224", "videoswin_tiny_kinetics400"),
    "swin_s_k400": ("TFVideoSwinS_K400_IN1K_P244_W877_32x224", "videoswin_small_kinetics400"),
    "swin_b_k400": ("TFVideoSwinB_K400_IN1K_P244_W877_32x224", "videoswin_base_kinetics400"),
    "swin_b_k400_in22k": (
        "TFVideoSwinB_K400_IN22K_P244_W877_32x224",
        "videoswin_base_kinetics400_imagenet22k",
    ),
    "swin_b_k600_in22k": (
        "TFVideoSwinB_K600_IN22K_P244_W877_32x224",
        "videoswin_base_kinetics600_imagenet22k",
    ),
    "swin_b_ssv2": (
        "TFVideoSwinB_SSV2_K400_P244_W1677_32x224",
        "videoswin_base_something_something_v2",
    ),
}


@pytest.mark.parametrize("name", sorted(KNOWN_NAMES))
def test_each_preset_answers_to_the_names_users_know(name):
    seed, keras3 = KNOWN_NAMES[name]
    preset = get_preset(name)
    assert preset.names == (name, seed, f"{keras3}_classifier", keras3)
    assert [lookup(other) for other in preset.names] == [(preset, False)] * 3 + [(preset, True)]
    source = resolve(f"{keras3}_classifier")
    assert (source.preset, source.backbone) == (preset, False)


def test_names_are_unique_and_unknown_ones_are_none():
    every = [name for preset in presets().values() for name in preset.names]
    assert len(every) == len(set(every)) == 4 * len(presets())
    assert lookup("videoswin_tiny_kinetics600") is None


def test_the_keras3_backbone_name_builds_without_a_head():
    source = resolve("videoswin_base_something_something_v2")
    arguments = model_arguments(source, "base", {})
    assert arguments == {"include_top": False, "window_size": (16, 7, 7), "patch_size": (2, 4, 4)}
    with pytest.raises(ValueError) as info:
        model_arguments(source, "base", {"include_top": True})
    assert str(info.value) == (
        "weights='videoswin_base_something_something_v2' names the backbone alone (the Keras 3 "
        "rewrite's name); leave include_top out, or use weights='swin_b_ssv2' for the classifier"
    )
