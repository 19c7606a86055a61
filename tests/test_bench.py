"""benchmarks/bench.py's command line: every option explained, and --backends' table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402


def test_help_explains_every_option():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(done.stdout.split())
    assert "one forward table and one conversion row each; --backends times only the first" in text
    assert "the clip is 1 x frames x size x size x 3 (default 224)" in text
    assert "a row shows the best (default 3). With --backends: the interleaved rounds" in text
    assert "(the Dense products' table is always the best of 5 per product)" in text
    assert "medians against TensorFlow's (the columns: README.md, section 'Keras backends')" in text
    assert "compiled ahead of time by AOTInductor with freezing, whose Dense layers run" in text
    assert "a missing one is first written there by vswin-convert synthesize" in text
    assert "a row shows its fastest round and its largest memory (default 2" in text
    assert "--quick: 1; --backends has its own rounds, --repeats)" in text
    assert "Targets (issues 11 and 17, a verdict line each)" in text  # what the tables show
    assert "--forward-worker" not in text  # the workers' own options stay hidden
    unexplained = [
        action.option_strings[0]
        for action in bench.arguments()._actions
        if not action.help  # argparse.SUPPRESS is a help text: those are the workers'
    ]
    assert unexplained == []


def test_backends_table_gives_no_verdict_on_the_reference():
    times = {
        "tensorflow": [(0.30, 0.29), (0.20, 0.21), (0.25, 0.24)],
        "torch": [(0.50, 0.50), (0.55, 0.54), (0.60, 0.61)],
        "jax": [(0.20, 0.40), (0.10, 0.30), (0.30, 0.35)],
    }
    assert bench.backend_table(times) == [  # jax: met on wall time though 1.46x TF's CPU s
        "  backend      median s   best s   CPU s  vs TF median  vs TF CPU  "
        "verdict on vs TF median",
        "  tensorflow      0.250    0.200   0.240         1.00x      1.00x  (the reference)",
        "  torch           0.550    0.500   0.540         2.20x      2.25x  missed: within 1.5x",
        "  jax             0.200    0.100   0.350         0.80x      1.46x  met: within 1.5x",
    ]


def test_backends_measure_no_matmul_peak(monkeypatch, capsys):
    """--backends prints only what it uses: no peak (its Dense table has each backend's rate)."""
    rounds = []

    def no_peak(*args, **kwargs):
        raise AssertionError("--backends measured the matmul peak")

    monkeypatch.setattr(bench, "matmul_peak", no_peak)
    monkeypatch.setattr(bench, "backend_rounds", lambda *args: rounds.append(args))
    monkeypatch.setattr(bench, "cpu_description", lambda: "a CPU")
    monkeypatch.setattr(sys, "argv", ["bench.py", "--backends", "--repeats", "5"])
    bench.main()
    assert rounds == [("swin_t_k400", (1, 8, 224, 224, 3), 5, 1, False)]  # not --torch-compiled
    assert "peak" not in capsys.readouterr().out


def test_dense_table_estimates_torch_with_its_onednn_linear(capsys):
    """The torch+oneDNN column is torch's pass with its Dense time swapped for oneDNN's."""
    from flops import Product

    product = Product(kind="dense", m=1000, k=100, n=500, count=2)  # 0.2 GFLOP in all
    seconds = {"tensorflow": [0.0004], "torch": [0.001], bench.ONEDNN: [0.0005]}
    passes = {"tensorflow": [(0.010, 0.010)], "torch": [(0.020, 0.020)]}
    bench.dense_table([product], seconds, passes)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "  fp32 Dense products through keras.ops.matmul, GFLOP per CPU second (best of 5)"
    )
    assert lines[3] == "  1000x100x500         2          250          100          200"
    assert lines[4] == "  pass CPU s (median)           0.010        0.020        0.019"
    assert lines[5] == "  pass vs TF's                  1.00x        2.00x        1.90x"
    assert lines[6] == "  Dense CPU s                   0.001        0.002        0.001"


def test_torch_compiled_needs_backends():
    """--torch-compiled adds a row to --backends' table; alone it is a usage error, not ignored."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench.py"), "--torch-compiled"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "bench.py: error: --torch-compiled adds a row to --backends' table: pass --backends too"
    )


def test_forward_rows_are_interleaved_in_rounds_keeping_the_fastest(monkeypatch, capsys):
    """Every row once a round, rows interleaved (a slow minute of a shared machine hits one
    round of a row, not all its passes); a row shows its fastest seconds and its largest
    memory; the cache behind ov-cached is filled once, before its first round."""
    calls = []
    seconds = iter([0.9, 0.5, 0.6, 0.7, 0.4, 0.8])  # default, ov-fp32, ov-cached; twice

    def worker(args, backend="tensorflow"):
        calls.append(args[1:3])
        if len(calls) == 3:  # the process that fills the cache before ov-cached's first round
            return {"seconds": 9.0, "peak": 9.0, "added": 9.0}
        return {"seconds": next(seconds), "peak": 1.0 + len(calls) / 10, "added": 0.5}

    monkeypatch.setattr(bench, "in_fresh_process", worker)
    monkeypatch.setattr(
        bench, "ROWS", [row for row in bench.ROWS if row[1] in ("default", "ov-fp32", "ov-cached")]
    )
    monkeypatch.setattr(bench, "verdicts", lambda *args: None)
    timing = bench.Timing(repeats=3, rounds=2)
    results = bench.forwards("swin_t_k400", (1, 8, 224, 224, 3), timing, 500.0, Path("x"), False)
    rows = [["videoswin_tf", engine] for engine in ("default", "ov-fp32", "ov-cached")]
    assert calls == [*rows, rows[2], *rows]  # the fill, then ov-cached itself
    assert results == {
        ("videoswin_tf", "default"): {"seconds": 0.7, "peak": 1.5, "added": 0.5},
        ("videoswin_tf", "ov-fp32"): {"seconds": 0.4, "peak": 1.6, "added": 0.5},
        ("videoswin_tf", "ov-cached"): {"seconds": 0.6, "peak": 1.7, "added": 0.5},
    }
    assert timing.describe() == "best of 3 passes in each of 2 rounds (all rows a round)"
    assert bench.Timing(2, 1).describe() == "best of 2 passes"
    assert "round 2 of 2 done" in capsys.readouterr().err


def test_rounds_and_repeats_must_be_at_least_one():
    """--rounds 0 would time nothing and fail minutes later: refused at once."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench.py"), "--rounds", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "bench.py: error: argument --rounds: must be at least 1, got 0"
    )
