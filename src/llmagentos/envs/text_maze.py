"""TextMaze: a grid maze whose observations are short English descriptions.

A navigation robot senses the four walls around it and a bearing to its charging
dock, and is told about them in words::

    You are at a junction. North: wall. East: open. South: open. West: open.
    The charging dock is 2 steps south and 3 steps east.

The bearing makes the task easy for a language model, and is invisible to a tabular
learner, which only sees each sentence as an opaque state. Every cell has its own
sentence (the bearing differs from cell to cell), so the strings are Markov states.

Layouts are rows of characters: ``#`` wall, ``.`` open, ``S`` start, ``D`` dock; the
border around the grid is wall. :func:`register_text_mazes` registers the built-in ids
in llmagentos' environment registry.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
from gymnasium import spaces

from llmagentos.exceptions import ConfigError

__all__ = [
    "ACTION_NAMES",
    "LAYOUTS",
    "TEXT_MAZE_IDS",
    "TextMaze",
    "register_text_mazes",
]

ACTION_NAMES: tuple[str, ...] = ("north", "east", "south", "west")
_MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))

LAYOUTS: dict[str, tuple[str, ...]] = {
    # Two shortest routes of 8 steps; a robot that heads for the dock through any open
    # side finds one of them.
    "small": (
        "S..#.",
        ".#...",
        ".###.",
        "...#.",
        "##..D",
    ),
    # Shortest route 14 steps. Heading for the dock is not always enough: at (5, 4) east
    # looks best (3 steps east, 2 south) but leads to a loop of two cells whose way on
    # points back; a bearing-follower needs correcting there (the case for the hybrid).
    "large": (
        "S.#.....",
        "..#.###.",
        "#...#...",
        ".##.#.#.",
        "....#.#.",
        ".##...#.",
        "...#.##.",
        "##.#...D",
    ),
}

TEXT_MAZE_IDS: dict[str, dict[str, Any]] = {
    "TextMaze-v0": {"layout": "small", "max_steps": 50},
    "TextMaze-Random-v0": {"layout": "small", "max_steps": 50, "random_start": True},
    "TextMaze-Large-v0": {"layout": "large", "max_steps": 100},
}
"""The registered ids and the constructor arguments each stands for."""

_CHARSET = frozenset(string.ascii_letters + string.digits + " .,:'-")
_MAX_LENGTH = 256

Cell = tuple[int, int]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class TextMaze(gymnasium.Env[str, Any]):
    """A small grid maze for a navigation robot, observed as text.

    Actions are ``Discrete(4)``: 0 north, 1 east, 2 south, 3 west (:attr:`action_names`).
    Each step costs ``step_reward`` (-1); moving into a wall leaves the robot in place
    and costs ``bump_reward`` more (-1); reaching the dock adds ``dock_reward`` (+10)
    and terminates the episode. After ``max_steps`` steps the episode is truncated.

    Args:
        layout: a name from :data:`LAYOUTS` or rows of ``#``/``.``/``S``/``D``.
        max_steps: the time limit in steps.
        random_start: start each episode on a random open cell (from the env's
            ``np_random``, so a seeded reset is deterministic) instead of ``S``.
        hint: include the bearing to the dock in observations.
        step_reward: reward of every step.
        bump_reward: extra reward for moving into a wall.
        dock_reward: extra reward for reaching the dock.
        render_mode: ``"ansi"`` (``render()`` returns the map) or ``"human"`` (prints it).
    """

    # An instance variable in gymnasium.Env, so it cannot be a ClassVar here.
    metadata: dict[str, Any] = {"render_modes": ["ansi", "human"], "render_fps": 4}  # noqa: RUF012
    action_names: tuple[str, ...] = ACTION_NAMES
    # What a language-model planner's prompt says about the task (see
    # llmagentos.modules.llm_planning). The wording was measured with SmolLM2-135M: with
    # the examples it picks an open side toward the dock in 13 of 16 cells of the small
    # maze on one CPU (9 of 16 on another: docs/llm-planning.md); without them it
    # answers "north" everywhere.
    task_description = (
        "a robot navigating a grid maze to its charging dock; moving into a wall wastes a step"
    )
    planning_guidance = "Move toward the dock through an open side, never into a wall."
    planning_examples: tuple[tuple[str, str, str], ...] = (
        (
            "North: wall. East: open. South: wall. West: open. The charging dock is 3 steps east.",
            "the dock is east and east is open",
            "east",
        ),
        (
            "North: open. East: wall. South: open. West: wall. "
            "The charging dock is 2 steps north and 1 step west.",
            "the dock is north and north is open",
            "north",
        ),
        (
            "North: wall. East: wall. South: open. West: wall. The charging dock is 1 step south.",
            "the dock is south and south is open",
            "south",
        ),
    )

    def __init__(
        self,
        layout: str | Sequence[str] = "small",
        *,
        max_steps: int = 50,
        random_start: bool = False,
        hint: bool = True,
        step_reward: float = -1.0,
        bump_reward: float = -1.0,
        dock_reward: float = 10.0,
        render_mode: str | None = None,
    ) -> None:
        rows = self._layout_rows(layout)
        if max_steps < 1:
            raise ConfigError("max_steps", f"must be at least 1 (got {max_steps})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError("render_mode", f"must be 'ansi' or 'human' (got {render_mode!r})")
        self.layout_name = layout if isinstance(layout, str) else "custom"
        self.rows = rows
        self.height, self.width = len(rows), len(rows[0])
        self.max_steps = max_steps
        self.random_start = random_start
        self.hint = hint
        self.step_reward = float(step_reward)
        self.bump_reward = float(bump_reward)
        self.dock_reward = float(dock_reward)
        self.render_mode = render_mode
        self.open_cells: list[Cell] = [
            (r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch != "#"
        ]
        self.start, self.dock = self._find("S"), self._find("D")
        unreachable = [cell for cell in self.open_cells if self.distance_to_dock(cell) is None]
        if unreachable:
            raise ConfigError("layout", f"cells {unreachable} cannot reach the dock")
        # One string object per cell, made once: cheap steps, and the Q-table's dict
        # lookups hit the same objects every time.
        self.descriptions: dict[Cell, str] = {cell: self.describe(cell) for cell in self.open_cells}
        self.action_space = spaces.Discrete(len(_MOVES))
        self.observation_space = spaces.Text(max_length=_MAX_LENGTH, charset=_CHARSET)
        self.position: Cell = self.start
        self.steps = 0
        self._done = True

    # -- layout ---------------------------------------------------------------------------

    @staticmethod
    def _layout_rows(layout: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                raise ConfigError(
                    "layout", f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})"
                )
            return LAYOUTS[layout]
        rows = tuple(layout)
        if not rows or any(len(row) != len(rows[0]) for row in rows) or not rows[0]:
            raise ConfigError("layout", "rows must be non-empty and of equal length")
        text = "".join(rows)
        if set(text) - set("#.SD"):
            raise ConfigError("layout", f"unknown characters {sorted(set(text) - set('#.SD'))}")
        if text.count("S") != 1 or text.count("D") != 1:
            raise ConfigError("layout", "needs exactly one start 'S' and one dock 'D'")
        return rows

    def _find(self, mark: str) -> Cell:
        return next(
            (r, c) for r, row in enumerate(self.rows) for c, ch in enumerate(row) if ch == mark
        )

    def is_open(self, cell: Cell) -> bool:
        """Whether ``cell`` is inside the grid and not a wall."""
        r, c = cell
        return 0 <= r < self.height and 0 <= c < self.width and self.rows[r][c] != "#"

    def distance_to_dock(self, cell: Cell | None = None) -> int | None:
        """Fewest steps from ``cell`` (default: the robot's) to the dock; ``None`` if cut off."""
        origin = self.position if cell is None else cell
        seen = {self.dock: 0}
        queue = deque([self.dock])
        while queue:
            here = queue.popleft()
            if here == origin:
                return seen[here]
            for dr, dc in _MOVES:
                there = (here[0] + dr, here[1] + dc)
                if there not in seen and self.is_open(there):
                    seen[there] = seen[here] + 1
                    queue.append(there)
        return None

    # -- text -----------------------------------------------------------------------------

    def describe(self, cell: Cell) -> str:
        """The sentence the robot hears in ``cell``."""
        if cell == self.dock:
            return "You are at the charging dock."
        sides = [self.is_open((cell[0] + dr, cell[1] + dc)) for dr, dc in _MOVES]
        n_open = sum(sides)
        if n_open <= 1:
            kind = "a dead end"
        elif n_open == 2:
            kind = "a corridor" if sides[0] == sides[2] else "a corner"
        else:
            kind = "a junction"
        walls = " ".join(
            f"{name.capitalize()}: {'open' if side else 'wall'}."
            for name, side in zip(ACTION_NAMES, sides, strict=True)
        )
        text = f"You are at {kind}. {walls}"
        if self.hint:
            dr, dc = self.dock[0] - cell[0], self.dock[1] - cell[1]
            parts = []
            if dr:
                parts.append(f"{_plural(abs(dr), 'step')} {'south' if dr > 0 else 'north'}")
            if dc:
                parts.append(f"{_plural(abs(dc), 'step')} {'east' if dc > 0 else 'west'}")
            text += f" The charging dock is {' and '.join(parts)}."
        return text

    # -- gymnasium API --------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode; ``options={"start": (row, col)}`` picks the start cell."""
        super().reset(seed=seed)
        start = (options or {}).get("start")
        if start is not None:
            cell = (int(start[0]), int(start[1]))
            if not self.is_open(cell) or cell == self.dock:
                raise ConfigError("start", f"{cell} is not an open cell other than the dock")
            self.position = cell
        elif self.random_start:
            candidates = [cell for cell in self.open_cells if cell != self.dock]
            self.position = candidates[int(self.np_random.integers(len(candidates)))]
        else:
            self.position = self.start
        self.steps = 0
        self._done = False
        return self.descriptions[self.position], self._info(bumped=False)

    def step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode is over: call reset() before step()")
        try:
            index = int(action)
        except (TypeError, ValueError):
            index = -1
        if not 0 <= index < len(_MOVES) or index != action:
            raise ValueError(f"action {action!r} is not one of 0..3 ({', '.join(ACTION_NAMES)})")
        dr, dc = _MOVES[index]
        target = (self.position[0] + dr, self.position[1] + dc)
        reward = self.step_reward
        bumped = not self.is_open(target)
        if bumped:
            reward += self.bump_reward
        else:
            self.position = target
        self.steps += 1
        terminated = self.position == self.dock
        if terminated:
            reward += self.dock_reward
        truncated = not terminated and self.steps >= self.max_steps
        self._done = terminated or truncated
        if self.render_mode == "human":
            self.render()
        return self.descriptions[self.position], reward, terminated, truncated, self._info(bumped)

    def _info(self, bumped: bool) -> dict[str, Any]:
        # "is_success" is the Gymnasium-robotics convention run summaries read.
        return {
            "position": list(self.position),
            "bumped": bumped,
            "steps": self.steps,
            "is_success": self.position == self.dock,
        }

    def ascii_map(self) -> str:
        """The maze as text: ``R`` robot, ``D`` dock, ``#`` wall."""
        lines = ["+" + "-" * self.width + "+"]
        for r, row in enumerate(self.rows):
            cells = []
            for c, ch in enumerate(row):
                if (r, c) == self.position:
                    cells.append("R")
                elif ch == "D":
                    cells.append("D")
                else:
                    cells.append("#" if ch == "#" else ".")
            lines.append("|" + "".join(cells) + "|")
        lines.append(lines[0])
        return "\n".join(lines)

    def render(self) -> str | None:
        """The ASCII map (``"ansi"`` or no render mode); printed for ``"human"``."""
        text = self.ascii_map()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def __repr__(self) -> str:
        return f"TextMaze({self.layout_name!r}, {self.height}x{self.width})"


def _factory(defaults: dict[str, Any]) -> Callable[..., TextMaze]:
    def make(**kwargs: Any) -> TextMaze:
        return TextMaze(**{**defaults, **kwargs})

    return make


def register_text_mazes() -> None:
    """Register the :data:`TEXT_MAZE_IDS` in llmagentos' environment registry.

    Safe to call more than once: ids already registered are left as they are.
    """
    from llmagentos.registration import registry

    # names() loads the built-ins first, so a call from builtins.py and a later one from
    # user code do not collide.
    known = set(registry.names("env"))
    for env_id, defaults in TEXT_MAZE_IDS.items():
        if env_id not in known:
            layout = defaults["layout"]
            size = f"{len(LAYOUTS[layout])}x{len(LAYOUTS[layout][0])}"
            start = "random start" if defaults.get("random_start") else "fixed start"
            registry.register(
                "env",
                env_id,
                _factory(defaults),
                description=f"text maze, {size}, {start}, {defaults['max_steps']} steps",
            )
