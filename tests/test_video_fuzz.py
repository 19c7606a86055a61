"""The fuzzed video corpus (`video_fuzz_corpus`): every video from the field, damaged or not,
gets through ``vswin-predict`` and a dataset run with a result of PyAV's frame count or one
error line of its own; never a traceback, a hang, or a file written for a failed video.
`make test` runs one group of 12 (every kind once), `make test-slow` all of it."""

from __future__ import annotations

import collections

import pytest
from video_fuzz_corpus import (
    DAMAGES,
    GROUP_SIZE,
    KINDS,
    Case,
    Outcome,
    decodable_frames,
    judge_command,
    judge_dataset,
    make_case,
    run_corpus,
    summary,
)

SEED = 0
CORPUS = range(4 * len(KINDS) * len(DAMAGES))  # 240 cases, 4 of each kind and damage
SAMPLE = CORPUS[: 5 * GROUP_SIZE : 5]  # 12 cases: every kind once, every damage twice or more


def check(outcomes: list[Outcome]) -> collections.Counter:
    print(summary(outcomes))
    problems = [
        f"case {o.index} ({o.kind}, {o.damage}) in the {o.run} run: {o.problem}"
        for o in outcomes
        if o.problem
    ]
    assert not problems, f"{len(problems)} videos went wrong:\n" + "\n".join(problems)
    return collections.Counter("result" if o.error is None else "error" for o in outcomes)


def test_the_corpus_is_seeded_and_the_sample_covers_every_kind(tmp_path):
    assert (len(KINDS), len(DAMAGES), len(CORPUS)) == (12, 5, 240)

    def made(seed: int, folder: str) -> bytes:
        (tmp_path / folder).mkdir()
        return make_case(seed, 19, tmp_path / folder).path.read_bytes()  # odd sizes, truncated

    assert made(SEED, "a") == made(SEED, "b") != made(SEED + 1, "c")
    kinds = collections.Counter(list(KINDS)[i % len(KINDS)] for i in SAMPLE)
    damages = collections.Counter(list(DAMAGES)[i // len(KINDS) % len(DAMAGES)] for i in SAMPLE)
    assert set(kinds) == set(KINDS) and set(damages) == set(DAMAGES) and len(SAMPLE) == 12


def test_undamaged_kinds_are_what_they_say(tmp_path):
    """Each kind's valid file as PyAV sees it: cover art beside (or instead of) the video,
    several frame sizes in one stream, a display matrix."""
    import av

    found = {}
    for index, kind in enumerate(KINDS):
        case = make_case(SEED, index, tmp_path)
        assert case.damage == "none"
        with av.open(str(case.path)) as container:
            covers = [
                s.index
                for s in container.streams.video
                if s.disposition & av.stream.Disposition.attached_pic
            ]
            videos = [s for s in container.streams.video if s.index not in covers]
            sizes = [(f.width, f.height) for f in container.decode(videos[0])] if videos else []
        found[kind] = (covers, len(set(sizes)))
    assert found["cover_first"][0] == [0] and found["cover_after"][0] == [1]
    assert len(found["several_covers"][0]) in (2, 3)
    assert found["cover_only"] == ([0], 0) and found["audio_cover"] == ([1], 0)
    for kind in ("size_up", "size_down", "odd_sizes", "change_at_first_frame"):
        assert found[kind][1] == 2, kind
    assert found["change_at_last_frame"][1] == 2 and found["several_changes"][1] >= 2
    assert found["rotated"][1] == 1
    assert decodable_frames(make_case(SEED, 3, tmp_path).path) is None  # cover only


def _case(tmp_path, kind="size_up", damage="truncated") -> Case:
    return Case(0, kind, damage, tmp_path / "v.ts")


@pytest.mark.parametrize(
    "exit_code, stdout, stderr, problem",
    [
        (0, "{p}  (9 frames, 1x1 views)\n", "engine\n", None),
        (1, "", "engine\nerror: {p}: decoding failed\n1 of 1 videos failed\n", None),
        (0, "{p}  (8 frames, 1x1 views)\n", "engine\n", "8 frames, PyAV decodes 9"),
        (0, "", "engine\nerror: {p}: decoding failed\n1 of 1 videos failed\n", "exit 0 with 1"),
        (1, "", "engine\nerror: {p}: x\nerror: {p}: y\n1 of 1 videos failed\n", "2 error lines"),
        (1, "", "engine\nerror: {p}: x\nTraceback\n1 of 1 videos failed\n", "a traceback"),
        (
            1,
            "",
            "engine\nerror: {p}: failed while classifying it (KeyError: 3); please report\n"
            "1 of 1 videos failed\n",
            "an unexpected exception",
        ),
        (None, "", "no end within 240 s\n", "exit None"),
    ],
)
def test_the_command_judge_fails_what_it_must(tmp_path, exit_code, stdout, stderr, problem):
    case = _case(tmp_path)
    features = tmp_path / "features"
    features.mkdir()
    if stdout:
        (features / "v.h5").write_bytes(b"")
    records = [{}] if exit_code is not None else None
    text = {"stdout": stdout.format(p=case.path), "stderr": stderr.format(p=case.path)}
    outcome = judge_command([case], {0: 9}, exit_code, **text, features=features, records=records)
    assert len(outcome) == 1
    assert outcome[0].problem == problem or outcome[0].problem.startswith(problem)


def test_the_command_judge_finds_files_of_failed_videos(tmp_path):
    case = _case(tmp_path)
    (tmp_path / "v.h5").write_bytes(b"")
    stderr = f"engine\nerror: {case.path}: decoding failed\n1 of 1 videos failed\n"
    [outcome] = judge_command([case], {0: 9}, 1, "", stderr, tmp_path, [{}])
    assert outcome.problem.startswith("feature files of failed videos or stray files: ['v.h5'")


def test_the_dataset_judge_fails_what_it_must(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    case = _case(tmp_path, damage="none")
    out = tmp_path / "out"
    out.mkdir()
    rows = {"video": [str(case.path)], "frames": [None], "error": [f"{case.path}: KeyError: 3"]}
    pq.write_table(pa.table(rows), out / "part-0.parquet")
    [outcome] = judge_dataset([case], {0: 9}, 0, "", out)
    assert outcome.problem == f"an unexpected exception: {case.path}: KeyError: 3"
    (out / ".part-1.parquet.partial").write_bytes(b"")
    [outcome] = judge_dataset([case], {0: 9}, 0, "", out)
    assert outcome.problem.startswith("not only shards in the folder")
    assert outcome.problem.endswith("; 0 rows")


def test_video_fuzz_sample(small_weights):
    kinds = check(run_corpus(SEED, list(SAMPLE), small_weights))
    assert set(kinds) == {"result", "error"}, kinds  # both endings occur: neither is vacuous


@pytest.mark.slow
def test_video_fuzz_corpus(small_weights):
    kinds = check(run_corpus(SEED, list(CORPUS), small_weights, log=print))
    assert set(kinds) == {"result", "error"}, kinds
