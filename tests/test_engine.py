"""`predict` chooses its engine (graph or XLA on TensorFlow) by itself, and keeps parity."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SPEC

import videoswin_tf.engine
from videoswin_tf.convert.mapping.spec import build_keras_model
from videoswin_tf.engine import onednn_enabled

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the engine choice is TensorFlow's"
)


@pytest.fixture
def clip():
    return np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)


def seeded_model():
    keras.utils.set_random_seed(0)
    return build_keras_model(SMALL_SPEC)


def test_default_engine_follows_onednn_and_keeps_parity(clip):
    model = seeded_model()
    assert model.predict_engine == ("graph" if onednn_enabled() else "xla")
    np.testing.assert_allclose(model.predict_on_batch(clip), model(clip), atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.predict(clip, verbose=0), model(clip), atol=1e-5, rtol=0)


@pytest.mark.parametrize("xla", [True, False])
def test_either_engine_predicts_what_the_model_computes(clip, monkeypatch, xla):
    monkeypatch.setattr(videoswin_tf.engine, "xla_for_predict", lambda: xla)
    model = seeded_model()
    model.compile()  # jit_compile="auto" leaves the choice to the model
    assert model.predict_engine == ("xla" if xla else "graph")
    traced = {}  # the jit_compile of the tf.function Keras makes for one predict step
    function = tf.function

    def recording(fn=None, **kwargs):
        traced[getattr(fn, "__name__", None)] = kwargs.get("jit_compile")
        return function(fn, **kwargs)

    monkeypatch.setattr(tf, "function", recording)
    np.testing.assert_allclose(model.predict_on_batch(clip), model(clip), atol=1e-5, rtol=0)
    assert "predict_function" in traced or "one_step_on_data_distributed" in traced
    assert (traced.get("one_step_on_data") is True) == xla
    assert model.jit_compile is False  # fit and evaluate keep Keras' own choice on the CPU


def test_an_explicit_jit_compile_is_kept(clip, monkeypatch):
    monkeypatch.setattr(videoswin_tf.engine, "xla_for_predict", lambda: True)
    model = seeded_model()
    model.compile(jit_compile=False)
    assert model.predict_engine == "graph"
    model.predict_on_batch(clip)
    assert model.jit_compile is False
    model.compile(run_eagerly=True)
    assert model.predict_engine == "eager"


def test_xla_is_chosen_where_tensorflow_runs_without_onednn():
    code = "from videoswin_tf.engine import xla_for_predict as f; print(f())"
    for setting, expected in (("0", "True"), ("1", "False")):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == expected
