"""Random TextMaze layouts: a new maze per seed, for experiments that must not memorise one.

:func:`random_layout` carves a maze by a seeded depth-first search over rooms two cells
apart (every room reachable, dead ends included), opens ``loops`` more walls between
rooms so that some cells have two ways on, and puts the dock and the start in rooms far
apart. The rows go straight into :class:`~llmagentos.envs.text_maze.TextMaze`.
"""

from __future__ import annotations

import random
from collections import deque

from llmagentos.exceptions import ConfigError

__all__ = ["random_layout"]

Cell = tuple[int, int]


def _farthest(grid: list[list[str]], origin: Cell) -> Cell:
    """The open cell farthest (in steps) from ``origin``; ties to the first found."""
    height, width = len(grid), len(grid[0])
    seen = {origin}
    queue = deque([origin])
    last = origin
    while queue:
        last = queue.popleft()
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            r, c = last[0] + dr, last[1] + dc
            if 0 <= r < height and 0 <= c < width and grid[r][c] != "#" and (r, c) not in seen:
                seen.add((r, c))
                queue.append((r, c))
    return last


def random_layout(seed: int, *, height: int = 7, width: int = 7, loops: int = 2) -> tuple[str, ...]:
    """A maze of ``height`` x ``width`` cells (odd sizes use every row and column).

    Args:
        seed: the layout's seed (the same seed, the same maze).
        height: rows, at least 3.
        width: columns, at least 3.
        loops: extra walls between rooms to open (cycles in the maze).
    """
    if height < 3 or width < 3:
        raise ConfigError("height" if height < 3 else "width", "must be at least 3")
    if loops < 0:
        raise ConfigError("loops", f"must be >= 0 (got {loops})")
    rng = random.Random(seed)
    grid = [["#"] * width for _ in range(height)]
    rooms = [(r, c) for r in range(0, height, 2) for c in range(0, width, 2)]
    start = rooms[rng.randrange(len(rooms))]
    grid[start[0]][start[1]] = "."
    stack, visited = [start], {start}
    while stack:
        r, c = stack[-1]
        nexts = [
            (r + dr, c + dc)
            for dr, dc in ((-2, 0), (0, 2), (2, 0), (0, -2))
            if 0 <= r + dr < height and 0 <= c + dc < width and (r + dr, c + dc) not in visited
        ]
        if not nexts:
            stack.pop()
            continue
        there = nexts[rng.randrange(len(nexts))]
        grid[(r + there[0]) // 2][(c + there[1]) // 2] = "."
        grid[there[0]][there[1]] = "."
        visited.add(there)
        stack.append(there)
    walls = [
        (r, c)
        for r in range(height)
        for c in range(width)
        if grid[r][c] == "#"
        and (
            (r % 2 == 0 and c % 2 == 1 and c + 1 < width)
            or (r % 2 == 1 and c % 2 == 0 and r + 1 < height)
        )
    ]
    rng.shuffle(walls)
    for r, c in walls[:loops]:
        grid[r][c] = "."
    dock = _farthest(grid, start)
    origin = _farthest(grid, dock)
    grid[dock[0]][dock[1]] = "D"
    grid[origin[0]][origin[1]] = "S"
    return tuple("".join(row) for row in grid)
