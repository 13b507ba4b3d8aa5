"""How many threads the batch engine's multi-token decode steps use: measured, not guessed.

On an idle machine a step of several tokens (a batch of sequences, a prompt) runs
faster on every core. On a busy one it can run many times slower: llama.cpp's threads
meet at a barrier after every operation, and a thread the OS preempted holds the others
there (on this project's shared 2-core machine a step of 8 sequences took 137 ms on one
thread and 4.4 s on two). So :class:`ThreadChooser` keeps the cost per token of each
setting (an exponential average over its recent steps, per kind of step) and uses the
cheaper, trying the other now and then: a try that loses waits twice as long before
the next (up to :data:`MAX_INTERVAL` steps), so a busy machine pays for few; and once
the setting in use costs more than the other did, the other is tried at once.

The thread count changes only the speed: the results of a step are the same.
"""

from __future__ import annotations

__all__ = ["MAX_INTERVAL", "ThreadChooser"]

MAX_INTERVAL = 1024
"""Most steps between two tries of the setting not in use."""
_FIRST_INTERVAL = 8
_WEIGHT = 0.3  # of the newest step in the running average


class _Kind:
    """The running costs of one kind of step (generation, or prompts)."""

    __slots__ = ("cost", "current", "interval", "until")

    def __init__(self, first: int) -> None:
        self.cost: dict[int, float] = {}
        self.current = first
        self.interval = _FIRST_INTERVAL
        self.until = 0  # steps left before the next try


class ThreadChooser:
    """Picks the threads of a multi-token step from ``options``, cheapest first.

    Args:
        options: thread counts to choose from; one option is a fixed setting.
    """

    def __init__(self, options: tuple[int, ...]) -> None:
        self.options = tuple(dict.fromkeys(options))
        self._kinds: dict[str, _Kind] = {}
        self.tries = 0

    def pick(self, kind: str) -> int:
        """The thread count for the next step of this kind."""
        if len(self.options) == 1:
            return self.options[0]
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = _Kind(self.options[0])
        untried = [t for t in self.options if t not in state.cost]
        if untried:
            return untried[0]
        if state.until > 0:
            state.until -= 1
            return state.current
        self.tries += 1
        others = [t for t in self.options if t != state.current]
        return min(others, key=lambda t: state.cost[t])

    def record(self, kind: str, threads: int, seconds: float, tokens: int) -> None:
        """A step of ``tokens`` tokens on ``threads`` threads took ``seconds``."""
        state = self._kinds.get(kind)
        if state is None or tokens <= 0:
            return
        per_token = seconds / tokens
        old = state.cost.get(threads)
        state.cost[threads] = per_token if old is None else old + _WEIGHT * (per_token - old)
        if threads == state.current:
            others = [cost for t, cost in state.cost.items() if t != threads]
            if others and state.cost[threads] > min(others):
                state.until = 0  # the other was cheaper when last tried: try it again now
            return
        if len(state.cost) < len(self.options):  # still measuring the options once
            state.current = min(state.cost, key=state.cost.__getitem__)
            return
        if state.cost[threads] < state.cost[state.current]:
            state.current, state.interval = threads, _FIRST_INTERVAL
        else:
            state.interval = min(state.interval * 2, MAX_INTERVAL)
        state.until = state.interval

    def snapshot(self) -> dict[str, object]:
        """What it chose and why (ms per token by threads), for stats."""
        return {
            kind: {
                "threads": state.current,
                "ms_per_token": {t: round(c * 1000, 3) for t, c in sorted(state.cost.items())},
            }
            for kind, state in self._kinds.items()
        } | {"tries": self.tries, "options": list(self.options)}
