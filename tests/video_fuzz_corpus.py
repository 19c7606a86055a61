"""A seeded corpus of videos from the field and their damaged mutants, and a runner that feeds
them to ``vswin-predict`` and to a dataset run.

Case ``index`` of ``seed`` is the field kind ``KINDS[index % len(KINDS)]`` (cover art,
frame-size changes, rotation; each a valid file made here with PyAV through `video_files`)
with the damage ``DAMAGES[index // len(KINDS) % len(DAMAGES)]`` on top (none, truncated at a
random byte, bytes flipped in the middle, zero length, header only); its sizes, frame counts
and damage are drawn from a generator seeded with ``(seed, index)``, so a failing case is
reproduced from its two numbers alone (`make_case`).

`run_corpus` runs the cases in groups, each group in one ``vswin-predict`` command (the small
test model, one view, features and snippets to a folder, a JSON file) and in one dataset run
(`predict_dataset` with a decoding process, in its own process), each under a time limit, and
judges every video of the group (`judge_command`, `judge_dataset`): a result whose frame
count equals PyAV's own count of the decodable frames of the video stream, or exactly one
one-line error naming the video (and nothing written for it); the command's exit status 0 when
every video has a result, else 1; never a traceback, a hang, or a stray file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dataset_model import SMALL_CONFIG
from video_files import encode, encode_audio_with_cover, encode_joined_ts, encode_with_cover

from videoswin_tf.cli.predict import NO_CLASS_NAMES
from videoswin_tf.video.dataset import ROWS

GROUP_SIZE = 12  # videos per command and per dataset run
# Both runs of a group (each starting TensorFlow and the model, then 12 videos of at most 64x64
# pixels) took 28 to 135 s on 2 shared cores at load 12 to 15; a run past this limit is killed
# and each of its videos is a problem (a hang).
GROUP_LIMIT_S = 240
WORKERS = 2
COMMAND = Path(sys.executable).parent / "vswin-predict"
SNIPPETS = "4:3"
NO_VIDEO_STREAM = "has no video stream (found "
# The catch-all one-line reports of an exception that is no `VideoError`: vswin-predict's
# and the dataset runner's. The guarantees hold, but the corpus found an unhandled case.
UNEXPECTED = (re.compile(r"failed while classifying it \("), re.compile(r"^: [A-Z]\w*: "))


# --- the corpus ---------------------------------------------------------------------------


def _frames(rng: random.Random) -> int:
    return rng.randint(3, 14)


def _size(rng: random.Random, odd: bool = False) -> tuple[int, int]:
    """A frame size of at most 64x64: even (4:2:0), or odd in both sides."""
    width, height = rng.randrange(32, 65, 2), rng.randrange(32, 65, 2)
    return (width - 1, height - 1) if odd else (width, height)


def _covered(covers: int, cover_first: bool) -> Callable[[random.Random, Path], Path]:
    def make(rng: random.Random, path: Path) -> Path:
        width, height = _size(rng)
        return encode_with_cover(path, _frames(rng), width, height, covers, cover_first)

    return make


def _cover_only(rng: random.Random, path: Path) -> Path:
    """An MP4 that holds nothing but cover art (a tagged file whose media was dropped)."""
    import av
    from video_files import _add_cover

    with av.open(str(path), "w", format="mp4") as container:
        container.mux(_add_cover(container))
    return path


def _audio_cover(rng: random.Random, path: Path) -> Path:
    return encode_audio_with_cover(path, seconds=rng.choice([0.2, 0.5]))


def _joined(parts: Callable[[random.Random], list[tuple[int, int, int]]], pix_fmt="yuv420p"):
    """Recordings joined into one MPEG-TS: ``parts(rng)`` gives each one's frames and size."""

    def make(rng: random.Random, path: Path) -> Path:
        return encode_joined_ts(path, parts(rng), pix_fmt)

    return make


def _two_sizes(rng: random.Random, larger: bool) -> list[tuple[int, int, int]]:
    width, height = rng.randrange(32, 49, 2), rng.randrange(32, 49, 2)
    other = (width + rng.randrange(0, 17, 2), height + rng.randrange(2, 17, 2))
    first, second = ((width, height), other) if larger else (other, (width, height))
    return [(_frames(rng), *first), (_frames(rng), *second)]


def _several(rng: random.Random) -> list[tuple[int, int, int]]:
    return [(rng.randint(1, 6), *_size(rng)) for _ in range(rng.randint(3, 5))]


def _at_an_end(first: bool) -> Callable[[random.Random], list[tuple[int, int, int]]]:
    """One frame of another size as the first or the last frame."""

    def parts(rng: random.Random) -> list[tuple[int, int, int]]:
        (width, height), frames = _size(rng), _frames(rng)
        single = (1, width + 8, height - 4)
        return [single, (frames, width, height)] if first else [(frames, width, height), single]

    return parts


def _rotated(rng: random.Random, path: Path) -> Path:
    width, height = _size(rng)
    return encode(path, _frames(rng), width, height, rotation=rng.choice([90, 180, 270]))


# kind -> (file ending, maker(rng, path) -> path)
KINDS: dict[str, tuple[str, Callable[[random.Random, Path], Path]]] = {
    "cover_first": (".mp4", _covered(1, cover_first=True)),
    "cover_after": (".mp4", _covered(1, cover_first=False)),
    "several_covers": (".mp4", lambda rng, path: _covered(rng.randint(2, 3), True)(rng, path)),
    "cover_only": (".mp4", _cover_only),
    "audio_cover": (".m4a", _audio_cover),
    "size_up": (".ts", _joined(lambda rng: _two_sizes(rng, larger=True))),
    "size_down": (".ts", _joined(lambda rng: _two_sizes(rng, larger=False))),
    "odd_sizes": (
        ".ts",
        _joined(lambda rng: [(_frames(rng), *_size(rng, odd=True)) for _ in "ab"], "yuv444p"),
    ),
    "several_changes": (".ts", _joined(_several)),
    "change_at_first_frame": (".ts", _joined(_at_an_end(first=True))),
    "change_at_last_frame": (".ts", _joined(_at_an_end(first=False))),
    "rotated": (".mp4", _rotated),
}
# Kinds that hold no video to classify: undamaged, each is that one-line error.
NO_VIDEO = {"cover_only", "audio_cover"}


def _truncated(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _flipped(rng: random.Random, data: bytes) -> bytes:
    """Up to 16 bytes in the middle half XORed with a non-zero byte."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        damaged[rng.randrange(len(data) // 4, 3 * len(data) // 4)] ^= rng.randint(1, 255)
    return bytes(damaged)


def _header_only(rng: random.Random, data: bytes) -> bytes:
    """An MP4's boxes without its media data (``mdat``); an MPEG-TS's first 1 to 4 packets."""
    if data[4:8] != b"ftyp":
        return data[: 188 * rng.randint(1, 4)]
    from video_files import _boxes

    return b"".join(data[s:e] for kind, s, e in _boxes(data, 0, len(data)) if kind != "mdat")


DAMAGES: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "none": lambda rng, data: data,
    "truncated": _truncated,
    "flipped": _flipped,
    "zero_length": lambda rng, data: b"",
    "header_only": _header_only,
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One video of the corpus."""

    index: int
    kind: str
    damage: str
    path: Path


def make_case(seed: int, index: int, folder: Path) -> Case:
    """Write case ``index`` of ``seed`` into ``folder`` (named by its index, kind and damage)."""
    kind = list(KINDS)[index % len(KINDS)]
    damage = list(DAMAGES)[index // len(KINDS) % len(DAMAGES)]
    rng = random.Random(f"{seed}:{index}")
    suffix, maker = KINDS[kind]
    path = maker(rng, folder / f"case{index}_{kind}_{damage}{suffix}")
    path.write_bytes(DAMAGES[damage](rng, path.read_bytes()))
    return Case(index, kind, damage, path)


def decodable_frames(path: Path) -> int | None:
    """PyAV's own count of the decodable frames of the video stream (the first that is not
    cover art): its packets decoded one after the other without threads, a packet the decoder
    refuses skipped (as the ``ffmpeg`` command goes on past one), the demuxer's error ending
    them; None when the file does not open or has no such stream."""
    import av

    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError:
        return None
    with container:
        cover = av.stream.Disposition.attached_pic
        streams = [s for s in container.streams.video if not s.disposition & cover]
        if not streams:
            return None
        count, packets = 0, container.demux(streams[0])
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError:
                packet = None
            try:
                count += len(streams[0].decode(packet))
            except av.error.FFmpegError:
                pass
            if packet is None:
                return count


# --- judging ------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """How one video ended in one run (``"command"`` or ``"dataset"``): its frame count or its
    error line; ``problem`` is None when it ended as it must."""

    index: int
    kind: str
    damage: str
    run: str
    frames: int | None
    error: str | None
    problem: str | None


def _problem(case: Case, reference: int | None, frames: int | None, error: str | None):
    """What is wrong with one video's result (``frames``) or error line, else None."""
    if error is not None:
        if "\n" in error or not error.startswith(f"{case.path}: "):
            return f"an error that is not one line naming the video: {error!r}"
        if any(p.search(error[len(str(case.path)) :]) for p in UNEXPECTED):
            return f"an unexpected exception: {error}"
        if case.damage == "none" and case.kind not in NO_VIDEO:
            return f"a valid video failed: {error}"
        if case.damage == "none" and NO_VIDEO_STREAM not in error:
            return f"not the no-video-stream error: {error}"
        return None
    if case.damage == "none" and case.kind in NO_VIDEO:
        return f"a result ({frames} frames) for a file without a video stream"
    if frames != reference:
        return f"{frames} frames, PyAV decodes {reference}"
    return None


def judge_command(
    cases: list[Case],
    references: dict[int, int | None],
    exit_code: int | None,
    stdout: str,
    stderr: str,
    features: Path,
    records: list[dict] | None,
) -> list[Outcome]:
    """Each video's outcome in one ``vswin-predict`` run of ``cases``, and the run's own
    problems (a wrong exit status, a traceback, stray output or files) given to every video."""
    results = dict(re.findall(r"^(\S.*)  \((\d+) frames, 1x1 views\)$", stdout, re.MULTILINE))
    errors = [line[len("error: ") :] for line in stderr.splitlines() if line.startswith("error: ")]
    failed = sum(1 for case in cases if str(case.path) not in results)
    run_problems = []
    if exit_code != (1 if failed else 0):
        run_problems.append(f"exit {exit_code} with {failed} of {len(cases)} failed")
    if "Traceback" in stdout + stderr:
        run_problems.append(f"a traceback: {stderr[-300:]!r}")
    expected_tail = [f"{failed} of {len(cases)} videos failed"] if failed else []
    lines = [line for line in stderr.splitlines() if line != NO_CLASS_NAMES]  # the small model's
    others = [line for line in lines[1:] if not line.startswith("error: ")]
    if others != expected_tail:
        run_problems.append(f"stderr beyond the error lines: {others!r}")
    if records is None or len(records) != len(cases):
        run_problems.append(f"the JSON file holds {records and len(records)} records")
    written = {path.name for path in features.iterdir()} if features.is_dir() else set()
    stray = written - {f"{case.path.stem}.h5" for case in cases if str(case.path) in results}
    if stray:
        run_problems.append(f"feature files of failed videos or stray files: {sorted(stray)}")
    outcomes = []
    for case in cases:
        own = [error for error in errors if error.startswith(f"{case.path}: ")]
        frames = int(results[str(case.path)]) if str(case.path) in results else None
        error = own[0] if len(own) == 1 else None
        if (frames is None) == (len(own) != 1):
            problem = f"{len(own)} error lines and {'a' if frames else 'no'} result"
        else:
            problem = _problem(case, references[case.index], frames, error)
        if problem is None and frames is not None and f"{case.path.stem}.h5" not in written:
            problem = "a result without its features file"
        problem = "; ".join(filter(None, [*run_problems, problem])) or None
        outcomes.append(
            Outcome(case.index, case.kind, case.damage, "command", frames, error, problem)
        )
    return outcomes


def judge_dataset(
    cases: list[Case],
    references: dict[int, int | None],
    exit_code: int | None,
    output: str,
    out: Path,
) -> list[Outcome]:
    """Each video's outcome in one dataset run of ``cases``: one Parquet row each, complete or
    with its one-line error; only whole shards in the folder (and an empty ``.rows/``)."""
    run_problems = []
    if exit_code != 0 or "Traceback" in output:
        run_problems.append(f"the run ended with exit {exit_code}: {output[-300:]!r}")
    names = sorted(path.name for path in out.iterdir()) if out.is_dir() else []
    if ROWS in names:  # a finished run has gathered every row file into its shards
        left = sorted(path.name for path in (out / ROWS).iterdir())
        if left:
            run_problems.append(f"row files not gathered into shards: {left}")
        names.remove(ROWS)
    if any(not re.fullmatch(r"part-.*\.parquet", name) for name in names):
        run_problems.append(f"not only shards in the folder: {names}")
    rows: dict[str, list[dict]] = {}
    if names and not run_problems:
        import pyarrow.parquet as pq

        for name in names:
            for row in pq.read_table(out / name, columns=["video", "frames", "error"]).to_pylist():
                rows.setdefault(row["video"], []).append(row)
    outcomes = []
    for case in cases:
        own = rows.get(str(case.path), [])
        frames = own[0]["frames"] if len(own) == 1 and own[0]["error"] is None else None
        error = own[0]["error"] if len(own) == 1 else None
        problem = None if len(own) == 1 else f"{len(own)} rows"
        problem = problem or _problem(case, references[case.index], frames, error)
        problem = "; ".join(filter(None, [*run_problems, problem])) or None
        outcomes.append(
            Outcome(case.index, case.kind, case.damage, "dataset", frames, error, problem)
        )
    return outcomes


# --- running it ---------------------------------------------------------------------------


def _run(arguments: list[str], limit_s: float) -> tuple[int | None, str, str]:
    """Exit status (None after a hang, the command killed), stdout and stderr of a command."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    try:
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=limit_s, env=env)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return None, "", f"no end within {limit_s} s\n{stderr}"
    return done.returncode, done.stdout, done.stderr


def run_group(seed: int, indices: list[int], weights: Path, folder: Path) -> list[Outcome]:
    """Make the cases ``indices``, run them through ``vswin-predict`` and a dataset run, and
    judge every video in both; nothing of them is left in ``folder``."""
    work = Path(tempfile.mkdtemp(dir=folder))
    cases = [make_case(seed, index, work) for index in indices]
    references = {case.index: decodable_frames(case.path) for case in cases}
    config = work / "small.json"
    config.write_text(json.dumps(SMALL_CONFIG))
    features, records_file, out = work / "features", work / "records.json", work / "out"
    exit_code, stdout, stderr = _run(
        [
            str(COMMAND),
            *(str(case.path) for case in cases),
            *("--weights", str(weights), "--config", str(config), "--views", "1x1"),
            *("--engine", "tensorflow", "--features", str(features), "--snippets", SNIPPETS),
            *("--json", str(records_file)),
        ],
        GROUP_LIMIT_S,
    )
    records = json.loads(records_file.read_text()) if records_file.is_file() else None
    outcomes = judge_command(cases, references, exit_code, stdout, stderr, features, records)
    dataset_run = [sys.executable, __file__, str(weights), str(out)]
    exit_code, stdout, stderr = _run(
        [*dataset_run, *(str(case.path) for case in cases)], GROUP_LIMIT_S
    )
    outcomes += judge_dataset(cases, references, exit_code, stdout + stderr, out)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return outcomes


def _timed_group(*arguments) -> tuple[list[Outcome], float]:
    start = time.perf_counter()
    return run_group(*arguments), time.perf_counter() - start


def run_corpus(
    seed: int, indices: list[int], weights: Path, log: Callable[[str], None] = lambda _: None
) -> list[Outcome]:
    """Run the cases ``indices`` of ``seed`` in groups of `GROUP_SIZE`, `WORKERS` groups at a
    time; the outcomes of both runs, in the order of their index."""
    groups = [indices[i : i + GROUP_SIZE] for i in range(0, len(indices), GROUP_SIZE)]
    with (
        tempfile.TemporaryDirectory() as folder,
        concurrent.futures.ThreadPoolExecutor(WORKERS) as pool,
    ):
        futures = [
            pool.submit(_timed_group, seed, group, weights, Path(folder)) for group in groups
        ]
        outcomes = []
        for future in concurrent.futures.as_completed(futures):
            done, seconds = future.result()
            outcomes += done
            bad = sum(1 for outcome in done if outcome.problem)
            log(f"cases {done[0].index}..{done[-1].index}: {bad} problems in {seconds:.0f} s")
    return sorted(outcomes, key=lambda outcome: (outcome.index, outcome.run))


def summary(outcomes: list[Outcome]) -> str:
    """Cases, results, errors and problems per run."""
    lines = []
    for run in ("command", "dataset"):
        own = [outcome for outcome in outcomes if outcome.run == run]
        results = sum(1 for outcome in own if outcome.error is None and outcome.frames is not None)
        errors = sum(1 for outcome in own if outcome.error is not None)
        problems = sum(1 for outcome in own if outcome.problem)
        lines.append(
            f"{run}: {len(own)} cases, {results} results, {errors} errors, {problems} problems"
        )
    return "\n".join(lines)


def _dataset_run(weights: str, out: str, videos: list[str]) -> None:
    """A dataset run of ``videos`` with the small model, as `run_group` starts it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from dataset_model import LABELS, PIPELINE, SmallWeights

    from videoswin_tf.video.dataset import DatasetSettings, predict_dataset
    from videoswin_tf.video.snippets import SnippetSpec

    clip, stride = (int(part) for part in SNIPPETS.split(":"))
    settings = DatasetSettings(
        config=PIPELINE, labels=LABELS, snippets=SnippetSpec(clip, stride), workers=1
    )
    predict_dataset(SmallWeights(weights), videos, out, settings, progress=False)


if __name__ == "__main__":
    _dataset_run(sys.argv[1], sys.argv[2], sys.argv[3:])
