"""Upstream code run in a child process: for references whose package cannot share the
converter's process (the seed's runs under Keras 2; the rewrite's is also called ``videoswin``
and registers its classes with Keras when imported).

The parent (`run_child`) writes the clip and a job to ``clip.npy``/``job.json`` in a temporary
folder and runs ``python -m <reference module> <upstream folder> <job.json>``; the child
(`child_job`) puts the upstream folder first on ``sys.path``, reads the job and the clip, and
writes its arrays to the job's ``out`` (`child_outputs`, one ``.npz``), which the parent reads
back before the folder is removed. A failing child becomes one `ConversionError` line quoting
the last lines it wrote to stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

UPSTREAM_PACKAGE = "videoswin"  # the package both innat/VideoSwin versions' code holds
OUTPUT_LINES = 3  # of the child's stderr quoted when it fails
OUTPUT_CHARS = 2000


def upstream_folder(variable: str, missing: str) -> str:
    """The folder the environment variable ``variable`` names, which holds the upstream
    ``videoswin`` package.

    Raises:
        ConversionError: ``missing`` (what to set, or --no-parity), where ``variable`` is unset
            or its folder holds no ``videoswin`` package.
    """
    from videoswin_tf.convert.errors import ConversionError

    folder = os.environ.get(variable)
    if not folder or not (Path(folder) / UPSTREAM_PACKAGE).is_dir():
        raise ConversionError(missing)
    return folder


def run_child(
    module: str,
    folder: str,
    clip: np.ndarray,
    job: Mapping[str, Any],
    failure: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``python -m module folder job.json`` on ``clip`` (float32 ``(B, T, H, W, 3)``) and
    the JSON-able ``job`` (to which ``clip`` and ``out`` paths are added), with this process's
    environment plus ``env``; the arrays the child saved with `child_outputs`, by name.

    Raises:
        ConversionError: ``"<failure>: <the child's last stderr lines>"`` where it exits
            non-zero.
    """
    from videoswin_tf.convert.errors import ConversionError

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        np.save(work / "clip.npy", np.ascontiguousarray(clip, dtype=np.float32))
        job = {**job, "clip": str(work / "clip.npy"), "out": str(work / "out.npz")}
        (work / "job.json").write_text(json.dumps(job))
        result = subprocess.run(
            [sys.executable, "-m", module, folder, str(work / "job.json")],
            capture_output=True,
            text=True,
            env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"} | dict(env or {}),
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()[-OUTPUT_LINES:]
            raise ConversionError(f"{failure}: {' | '.join(lines)[-OUTPUT_CHARS:]}")
        with np.load(work / "out.npz") as out:
            return {name: out[name] for name in out.files}


def child_job(argv: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """In the child, from ``argv`` ``[program, upstream folder, job.json]``: the folder put
    first on ``sys.path`` (so ``import videoswin`` finds the upstream package), then the job
    and its clip."""
    folder, job_path = argv[1], argv[2]
    sys.path.insert(0, folder)
    job = json.loads(Path(job_path).read_text())
    return job, np.load(job["clip"])


def child_outputs(job: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """In the child: ``arrays`` saved by name to the job's ``out`` for `run_child`."""
    np.savez(job["out"], **arrays)
