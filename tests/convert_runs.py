"""``vswin-convert`` run in this process, as the tests of each checkpoint source run it: the
result, a conversion that must succeed with its parity report, a run refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from videoswin_tf.convert.cli import main
from videoswin_tf.convert.outputs.weights import report_path_for


def convert_cli(*args: str | Path | int) -> Result:
    """``vswin-convert *args`` (each argument as text), exceptions left to propagate."""
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def converted(source: Path, out: Path, *options: str) -> tuple[list[str], dict]:
    """The output lines and the parity report (``<out stem>.parity.json``) of ``vswin-convert
    --pth source --out out *options``, which must exit with status 0."""
    result = convert_cli("--pth", source, "--out", out, *options)
    assert result.exit_code == 0, result.output
    return result.output.splitlines(), json.loads(report_path_for(out).read_text())


def refused(*args: str | Path) -> str:
    """The last line of ``vswin-convert *args``, which must refuse its input (status 2)."""
    result = convert_cli(*args)
    assert result.exit_code == 2, result.output
    return result.output.strip().splitlines()[-1]
