"""The fuzzed corpus (`fuzz_corpus`): every damaged checkpoint either converts with passing
parity or is refused with one error line; never a traceback, exit 1, a hang over 60 s, a peak
RSS over 4 GiB or a file left behind. `make test` runs a sample, `make test-slow` all of it."""

from __future__ import annotations

import collections

import pytest
from fuzz_corpus import MUTATIONS, case, judge, run_corpus

SEED = 0
CORPUS = range(60 * len(MUTATIONS))  # 1260 cases, 60 of each mutation
SAMPLE = CORPUS[::11]  # 115 cases; 11 is coprime with 21, so every mutation 5 or 6 times


def check(outcomes) -> collections.Counter:
    problems = [f"case {o.index} ({o.mutation}): {o.problem}" for o in outcomes if o.problem]
    assert not problems, f"{len(problems)} cases went wrong:\n" + "\n".join(problems)
    return collections.Counter(o.exit_code for o in outcomes)


def test_the_corpus_is_seeded_and_the_sample_covers_every_mutation():
    assert len(MUTATIONS) == 21
    assert case(SEED, 7) == case(SEED, 7) and case(SEED, 7) != case(SEED + 1, 7)
    counts = collections.Counter(list(MUTATIONS)[i % len(MUTATIONS)] for i in SAMPLE)
    assert set(counts) == set(MUTATIONS) and min(counts.values()) == 5 and len(SAMPLE) == 115


@pytest.mark.parametrize(
    "exit_code, output, exception, files, problem",
    [
        (0, "parity PASS\n", None, {"out.weights.h5", "out.parity.json"}, None),
        (2, "[load] x\nerror: bad key\n", None, set(), None),
        (2, "[map] x\nerror: 2 problems:\n  - a\n  - b\n", None, set(), None),
        (0, "parity FAIL\n", None, {"out.weights.h5"}, "exit 0 without a passing parity"),
        (0, "PASS\n", None, {"out.weights.h5"}, "exit 0 but wrote ['out.weights.h5']"),
        (1, "error: parity failed\n", None, set(), "exit 1: error: parity failed"),
        (2, "error: a\nerror: b\n", None, set(), "exit 2 without one error line at the end"),
        (2, "error: a\nmore\n", None, set(), "exit 2 without one error line at the end"),
        (2, "error: a\n", None, {"x"}, "exit 2 but left ['x']"),
        (1, "", ValueError("boom"), set(), "raised ValueError: boom"),
    ],
)
def test_the_judge_fails_what_it_must(exit_code, output, exception, files, problem):
    verdict = judge(exit_code, output, exception, files)
    assert verdict == problem or (problem is not None and verdict.startswith(problem))


def test_fuzz_sample():
    exits = check(run_corpus(SEED, list(SAMPLE)))
    assert set(exits) == {0, 2}, exits  # both endings occur: neither check is vacuous


@pytest.mark.slow
def test_fuzz_corpus():
    exits = check(run_corpus(SEED, list(CORPUS)))
    assert set(exits) == {0, 2}, exits
