"""The batch engine's choice of threads for multi-token steps, on made-up timings."""

from __future__ import annotations

import itertools

from llmagentos.llm.local_threads import MAX_INTERVAL, SMALL, ThreadChooser


def run(chooser: ThreadChooser, cost: dict[int, float], steps: int, tokens: int = 8) -> list[int]:
    """Pick and record ``steps`` steps of ``tokens`` tokens at ``cost[threads]`` s a token."""
    picked = []
    for _ in range(steps):
        threads = chooser.pick(tokens)
        picked.append(threads)
        chooser.record(threads, cost[threads] * tokens, tokens)
    return picked


def test_one_option_is_a_fixed_setting() -> None:
    chooser = ThreadChooser((2,))
    assert run(chooser, {2: 0.01}, 5) == [2] * 5


def test_the_cheaper_setting_wins_and_the_other_is_tried_ever_less_often() -> None:
    chooser = ThreadChooser((1, 2))
    picked = run(chooser, {1: 0.01, 2: 0.3}, 5000)  # a busy machine: two threads lose
    tries = [i for i, t in enumerate(picked) if t == 2]
    assert tries[0] > 16  # short runs pay for no try
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps == sorted(gaps)
    assert gaps[-1] == MAX_INTERVAL + 1
    assert len(tries) < 12


def test_it_follows_the_machine_when_it_gets_busy_or_idle() -> None:
    chooser = ThreadChooser((1, 2))
    assert run(chooser, {1: 0.02, 2: 0.01}, 100)[-10:] == [2] * 10  # idle: two threads
    busy = run(chooser, {1: 0.02, 2: 0.5}, 20)  # busy now: back to one at the next step
    assert busy[1] == 1
    assert busy.count(2) <= 3
    seen = chooser.snapshot()
    assert seen["threads"] == 1
    assert seen["ms_per_token"][1] == 20.0 < seen["ms_per_token"][2]  # type: ignore[index]


def test_large_steps_use_the_choice_and_are_not_measured() -> None:
    chooser = ThreadChooser((1, 2))
    run(chooser, {1: 0.02, 2: 0.01}, 100)
    assert chooser.current == 2
    assert run(chooser, {1: 0.001, 2: 0.5}, 50, tokens=SMALL + 1) == [2] * 50  # prompts
    assert chooser.current == 2
