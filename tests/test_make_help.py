"""`make help` lists every target the Makefile has, each once."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_help_lists_every_target():
    defined = re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE)
    listed = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    names = [line.split()[1] for line in listed]
    assert sorted(names) == sorted(name for name in defined if name != "help")
    assert len(set(names)) == len(names) == 12
    assert all(line.startswith("make ") and len(line.split()) > 2 for line in listed)
