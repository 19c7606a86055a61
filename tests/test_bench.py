"""benchmarks/bench.py's command line: every option explained."""

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
    assert "a missing one is first written there by vswin-convert synthesize" in text
    assert "Targets (issues 11 and 17, a verdict line each)" in text  # what the tables show
    assert "--forward-worker" not in text  # the workers' own options stay hidden
    unexplained = [
        action.option_strings[0]
        for action in bench.arguments()._actions
        if not action.help  # argparse.SUPPRESS is a help text: those are the workers'
    ]
    assert unexplained == []
