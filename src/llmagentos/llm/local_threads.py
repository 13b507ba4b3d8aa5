"""How many threads the batch engine's multi-token decode steps use: measured, not guessed.

On an idle machine a step of several tokens (a batch of sequences, a prompt) runs
faster on every core. On a busy one it can run many times slower: llama.cpp's threads
meet at a barrier after every operation, and a thread the OS preempted holds the others
there (on this project's shared 2-core machine a step of 8 sequences took 137 ms on one
thread and 4.4 s on two). So :class:`ThreadChooser` keeps the cost per token of each
setting (an exponential average) and uses the cheaper. Costs are measured on small steps
only (a batch of sequences generating: at most :data:`SMALL` tokens), where trying the
worse setting costs one short step; a try that loses waits twice as long before the
next (up to :data:`MAX_INTERVAL` small steps), and once the setting in use costs more
than the other did, the other is tried at once. Large steps (prompts) use the choice.

The thread count changes only the speed: the results of a step are the same.
"""

from __future__ import annotations

__all__ = ["MAX_INTERVAL", "SMALL", "ThreadChooser"]

SMALL = 16
"""Tokens in a step small enough to measure on (and to try a setting on)."""
MAX_INTERVAL = 1024
"""Most small steps between two tries of the setting not in use."""
_FIRST_INTERVAL = 32  # small steps before the first try: short runs rarely pay for one
_WEIGHT = 0.3  # of the newest step in the running average


class ThreadChooser:
    """Picks the threads of a multi-token step from ``options``, the first until measured.

    Args:
        options: thread counts to choose from; one option is a fixed setting.
    """

    def __init__(self, options: tuple[int, ...]) -> None:
        self.options = tuple(dict.fromkeys(options))
        self.current = self.options[0]
        self.cost: dict[int, float] = {}  # seconds per token, running average
        self.interval = _FIRST_INTERVAL
        self.until = _FIRST_INTERVAL  # small steps left before the next try
        self.tries = 0

    def pick(self, tokens: int) -> int:
        """The thread count for a step of ``tokens`` tokens."""
        if len(self.options) == 1 or tokens > SMALL:
            return self.current
        if self.until > 0:
            self.until -= 1
            return self.current
        self.tries += 1
        others = [t for t in self.options if t != self.current]
        return min(others, key=lambda t: self.cost.get(t, 0.0))  # the untried first

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """A step of ``tokens`` tokens on ``threads`` threads took ``seconds``."""
        if len(self.options) == 1 or not 0 < tokens <= SMALL:
            return
        per_token = seconds / tokens
        old = self.cost.get(threads)
        self.cost[threads] = per_token if old is None else old + _WEIGHT * (per_token - old)
        if threads == self.current:
            others = [cost for t, cost in self.cost.items() if t != threads]
            if others and self.cost[threads] > min(others):
                self.until = 0  # the other was cheaper when last tried: try it again now
            return
        if self.cost[threads] < self.cost.get(self.current, float("inf")):
            self.current, self.interval = threads, _FIRST_INTERVAL
        else:
            self.interval = min(self.interval * 2, MAX_INTERVAL)
        self.until = self.interval

    def snapshot(self) -> dict[str, object]:
        """What it chose and why (ms per token by threads), for stats."""
        return {
            "threads": self.current,
            "ms_per_token": {t: round(c * 1000, 3) for t, c in sorted(self.cost.items())},
            "tries": self.tries,
            "options": list(self.options),
        }
