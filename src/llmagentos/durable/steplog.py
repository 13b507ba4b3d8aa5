"""The steps log: an append-only file beside the journal, written through a shared map.

Surviving the death of the process needs a step's record to reach the kernel, not the
disk. A SQLite commit per step costs ~30x an unjournaled trivial step (locks, a WAL
frame, the index); a ``write()`` ~2x, and on Taxi-v4 a system call per step is a large
part of the budget. A store into a ``MAP_SHARED`` mapping of the file is a copy into
the page cache itself: the pages belong to the kernel, so they outlive a SIGKILL and
are written back as any dirty page is (LMDB's ``MDB_WRITEMAP`` relies on the same). The
file is allocated a chunk at a time (``posix_fallocate``: a full disk is an error when
a chunk is taken, never a SIGBUS mid-step); where a file cannot be mapped, each frame
is one ``pwrite()`` instead. A frame::

    u32 length word (bit 31: a checksum follows) | [u32 CRC-32 of the body] | body

The first frame is a JSON header (format, run id, ``base``: the index of the first step
in the log, i.e. the steps the SQLite file held before). Zeros follow the last frame
(the rest of the chunk). The length word is stored after the rest of its frame, so a
frame whose word is there is whole: a kill mid-step leaves a zero word (the end of the
log) and maybe part of a body after it, which readers skip and the next writer zeroes.
A word with no whole frame behind it is what a power loss can leave at the tail; with
whole frames after it, it is damage: :class:`~llmagentos.exceptions.JournalError`
naming the file and the byte. The record's own checks (it decodes, it is the step
expected) catch edits and damage inside a frame.

Durability modes (``durability=``):

- ``process`` (the default): a step is in the page cache before the next begins; it
  survives the process being killed (SIGKILL, OOM killer, a crash), not a power loss
  or a kernel crash. No checksum: a kill cannot tear a frame whose word is written.
- ``power_loss``: group commit. The log is synced to disk (``msync``) once
  :data:`SYNC_STEPS` steps are unsynced or the oldest of them was logged
  :data:`SYNC_SECONDS` before, and always before the journal commits anything else (a
  tool or model call starting or finishing, an approval, an episode, the status:
  those commits are ``synchronous=FULL``), and at close. Its frames carry a CRC-32:
  the pages past the last sync may reach the disk in any order.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from llmagentos.durable.records import unpack
from llmagentos.exceptions import ConfigError, JournalError

__all__ = [
    "DURABILITY",
    "LOG_FORMAT",
    "SYNC_SECONDS",
    "SYNC_STEPS",
    "Frames",
    "StepLog",
    "check_durability",
    "log_path",
]

DURABILITY = ("process", "power_loss")
LOG_FORMAT = "llmagentos.steps/2"  # msgpack records (steps/1: marshal; read, appended to)
_FORMATS = ("llmagentos.steps/1", LOG_FORMAT)  # a frame's first byte tells its encoding
SYNC_STEPS = 100
SYNC_SECONDS = 0.05
_WORD = struct.Struct("<I")
_CHECKED = 1 << 31  # in a frame's length word: a CRC-32 of the body follows the word
_MAX_BODY = 1 << 28  # a longer "frame" is damage, not a record
_CHUNK = 1 << 20  # the file grows by this much at a time (~3,000 Taxi steps)
_READ_TRIES = 3


def check_durability(value: object, field: str = "durability") -> str:
    """``value`` if it names a durability mode.

    Raises:
        ConfigError: it does not (naming ``field``).
    """
    if value not in DURABILITY:
        modes = ", ".join(repr(mode) for mode in DURABILITY)
        raise ConfigError(field, f"must be one of {modes} (got {value!r})")
    return str(value)


def log_path(journal: Path) -> Path:
    """Where the steps log of the journal at ``journal`` lives."""
    return journal.with_name(journal.name + "-steps")


@dataclass(slots=True)
class Frames:
    """What a steps log holds: the bodies of its intact step frames, in order.

    Attributes:
        base: the global index of the first step in the log.
        bodies: one per step, whole (not yet decoded).
        end: the byte offset just past the last intact frame.
        torn: bytes after ``end`` that are not a frame (a write cut short).
    """

    base: int
    bodies: list[bytes] = field(default_factory=list)
    end: int = 0
    torn: int = 0


def _frame(body: bytes, *, checked: bool) -> tuple[bytes, bytes]:
    """A frame as its length word and the rest, to be stored in that order's reverse:
    the word last, so that a frame whose word is written is whole (a kill stops a
    process between two stores, never inside the order of its own stores)."""
    if checked:
        return _WORD.pack(len(body) | _CHECKED), _WORD.pack(zlib.crc32(body)) + body
    return _WORD.pack(len(body)), body


def _frame_at(data: bytes, offset: int) -> tuple[bytes | None, int]:
    """The whole frame's body at ``offset`` and the offset after it, or ``(None, offset)``."""
    if len(data) - offset < _WORD.size:
        return None, offset
    (word,) = _WORD.unpack_from(data, offset)
    length = word & ~_CHECKED
    start = offset + _WORD.size
    if word & _CHECKED:
        start += _WORD.size
    end = start + length
    if length == 0 or length > _MAX_BODY or end > len(data):
        return None, offset
    body = data[start:end]
    if word & _CHECKED and _WORD.unpack_from(data, offset + _WORD.size)[0] != zlib.crc32(body):
        return None, offset
    return body, end


class _Damaged(JournalError):
    """Damage before the log's end (a reader retries: it may have caught a store)."""


def _intact_frame_after(data: bytes, offset: int, stop: int) -> int | None:
    """Where a whole step frame starts after the bad one at ``offset``, if anywhere
    before ``stop`` (the last nonzero byte: a frame's length word is never zero)."""
    for start in range(offset + 1, stop):
        body = _frame_at(data, start)[0]
        if body is not None:
            try:
                unpack(body)
            except ValueError:
                continue
            return start
    return None


def parse(data: bytes, path: Path, *, run_id: str, base: int) -> Frames:
    """The frames of a log's bytes, checked against the journal (``run_id``, ``base``).

    Raises:
        JournalError: not a steps log, another run's, or damaged before its end.
    """
    header, offset = _frame_at(data, 0)
    if header is None:
        raise JournalError(f"{path} is not a steps log (no intact header); was it edited?")
    try:
        meta = json.loads(header)
    except ValueError as err:
        raise JournalError(f"{path}: the steps log's header is not JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") not in _FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise JournalError(f"{path}: format {found!r:.60} is not {LOG_FORMAT!r}")
    if meta.get("run_id") != run_id:
        raise JournalError(
            f"{path}: run_id {meta.get('run_id')!r:.40} is not the journal's ({run_id}): "
            "the steps log of another run; move it away (or the journal with it)"
        )
    if meta.get("base") != base:
        raise JournalError(
            f"{path}: base {meta.get('base')!r:.20} does not follow the {base} steps the "
            "journal holds; was the journal replaced?"
        )
    frames = Frames(base)
    bodies = frames.bodies
    while offset < len(data):
        body, end = _frame_at(data, offset)
        if body is None:
            frames.torn = len(data[offset:].rstrip(b"\0"))
            # A zero word: the end, maybe after the start of a frame a kill cut short.
            # A word, but no whole frame: the tail a power loss left, unless whole
            # frames follow, which means damage.
            word = _WORD.unpack_from(data, offset)[0] if len(data) - offset >= 4 else 0
            after = _intact_frame_after(data, offset, offset + frames.torn) if word else None
            if after is not None:
                raise _Damaged(
                    f"{path}: the steps log is damaged at byte {offset} (step "
                    f"{base + len(bodies)}), with intact steps from byte {after} on"
                )
            break
        bodies.append(body)
        offset = end
    frames.end = offset
    return frames


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _allocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of disk now, so that a full disk is an error here."""
    current = os.fstat(fd).st_size
    if size <= current:
        return
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    if fallocate is not None:
        try:
            fallocate(fd, current, size - current)
            return
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
    os.ftruncate(fd, size)


class StepLog:
    """One journal's steps log: read by anyone, appended to by the run.

    Args:
        path: the file (:func:`log_path`), or ``None`` for a journal in memory.
        durability: ``process`` or ``power_loss`` (see the module's docstring).
    """

    def __init__(self, path: Path | None, *, durability: str = "process") -> None:
        self.path = path
        self.power_loss = check_durability(durability) == "power_loss"
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._memory: list[bytes] | None = None
        self.next = -1  # the step the writer appends next; -1 until it opens
        self._end = 0  # just past the last frame
        self._size = 0  # bytes mapped
        self._synced = 0
        self._unsynced = 0
        self._oldest = 0.0

    @property
    def writing(self) -> bool:
        return self.next >= 0

    def exists(self) -> bool:
        return self._memory is not None if self.path is None else self.path.is_file()

    def frames(self, *, run_id: str, base: int) -> Frames | None:
        """The log as it is now (``None``: there is none yet).

        Raises:
            JournalError: unreadable, not a steps log, another run's, or damaged.
        """
        if self.path is None:
            return None if self._memory is None else Frames(base, list(self._memory))
        for attempt in range(_READ_TRIES):
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as err:
                raise JournalError(f"cannot read the steps log {self.path}: {err}") from err
            try:
                return parse(data, self.path, run_id=run_id, base=base)
            except _Damaged:
                # A writer's stores may reach another CPU out of order; damage that
                # stays is damage.
                if attempt == _READ_TRIES - 1:
                    raise
                time.sleep(0.01)
        raise AssertionError("unreachable")

    def open(self, *, run_id: str, base: int) -> int:
        """Become the writer: zero a torn tail, or create the log; return the bytes zeroed.

        Raises:
            JournalError: the log cannot be read or written, or is not this journal's.
        """
        if self.path is None:
            self._memory = self._memory or []
            self.next = base + len(self._memory)
            return 0
        found = self.frames(run_id=run_id, base=base)
        try:
            if found is None:
                self._create(run_id, base)
                torn = 0
            else:
                self._fd = os.open(self.path, os.O_RDWR)
                self._end = found.end
                torn = found.torn
                self._reserve(torn)
                if torn:
                    self._store(self._end, bytes(torn))
                    self._unsynced = 1
                    self.sync()
        except OSError as err:
            self.close()
            raise JournalError(f"cannot write the steps log {self.path}: {err}") from err
        self._synced = self._end
        self.next = base + (0 if found is None else len(found.bodies))
        return torn

    def _create(self, run_id: str, base: int) -> None:
        """Write the header into a new file and move it into place: a reader finds a
        whole log or none."""
        assert self.path is not None
        header = json.dumps({"format": LOG_FORMAT, "run_id": run_id, "base": base})
        word, rest = _frame(header.encode(), checked=True)
        frame = word + rest
        partial = self.path.with_name(self.path.name + ".new")
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, frame)
            if self.power_loss:
                os.fsync(fd)
            os.replace(partial, self.path)
        except BaseException:
            os.close(fd)
            raise
        if self.power_loss:
            _sync_folder(self.path.parent)
        self._fd = fd
        self._end = len(frame)
        self._reserve(0)

    def _reserve(self, need: int) -> None:
        """Room for ``need`` more bytes: the file allocated in whole chunks, and mapped."""
        assert self._fd is not None
        size = -(-(self._end + need + 1) // _CHUNK) * _CHUNK
        if self._map is not None and size <= self._size:
            return
        _allocate(self._fd, size)
        if self._map is not None:
            self._map.close()
            self._map = None
        try:
            self._map = mmap.mmap(self._fd, size)
        except (OSError, ValueError):  # a file system without shared maps: pwrite()
            self._map = None
        self._size = size

    def _store(self, offset: int, data: bytes) -> None:
        if self._map is not None:
            self._map[offset : offset + len(data)] = data
        else:
            assert self._fd is not None
            written = os.pwrite(self._fd, data, offset)
            while written < len(data):  # short only when the disk is nearly full
                written += os.pwrite(self._fd, data[written:], offset + written)

    def append(self, n: int, body: bytes) -> None:
        """Log step ``n`` (``body`` from :mod:`llmagentos.durable.records`).

        Raises:
            JournalError: ``n`` is not the next step, or there is no room for it (the
                log is left as it was).
        """
        shared, end = self._map, self._end
        start = end + 4  # _WORD.size
        after = start + len(body)
        if n == self.next and shared is not None and after < self._size and not self.power_loss:
            # The hot path: two copies into the page cache, no system call; the length
            # word last (see _frame). No checksum: a kill cannot tear a frame whose word
            # is written, and the checks of the decoded record catch what edits do.
            shared[start:after] = body
            shared[end:start] = len(body).to_bytes(4, "little")  # (the copy's own code path)
            self._end = after
            self.next = n + 1
            return
        self._append(n, body)

    def _append(self, n: int, body: bytes) -> None:
        if n != self.next:
            raise JournalError(f"{self.path}: step {n} logged, expected step {self.next}")
        if self._memory is not None:
            self._memory.append(body)
            self.next = n + 1
            return
        # A power loss may write back any of the pages past the last sync, in any
        # order: those frames carry a checksum.
        word, rest = _frame(body, checked=self.power_loss)
        end = self._end
        after = end + len(word) + len(rest)
        try:
            if after >= self._size:
                self._reserve(after - end)
            self._store(end + len(word), rest)
            self._store(end, word)
        except OSError as err:
            raise JournalError(f"cannot write the steps log {self.path}: {err}") from err
        self._end = after
        self.next = n + 1
        if self.power_loss:
            self._unsynced += 1
            if self._unsynced == 1:
                self._oldest = time.monotonic()
            elif self._unsynced >= SYNC_STEPS or time.monotonic() - self._oldest >= SYNC_SECONDS:
                self.sync()

    def sync(self) -> None:
        """Write what was logged since the last sync to disk (``power_loss``; else nothing)."""
        if not self._unsynced or self._fd is None:
            return
        try:
            if self._map is not None:
                start = self._synced - self._synced % mmap.PAGESIZE
                self._map.flush(start, self._end - start)
            else:
                os.fsync(self._fd)
        except OSError as err:
            raise JournalError(f"cannot sync the steps log {self.path}: {err}") from err
        self._synced = self._end
        self._unsynced = 0

    def close(self) -> None:
        """Stop writing (synced first in ``power_loss`` mode); the unused chunk is freed."""
        fd = self._fd
        if fd is not None:
            try:
                self.sync()
            finally:
                if self._map is not None:
                    self._map.close()
                    self._map = None
                if self.writing:  # not after a failed open: _end is not the log's end then
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, self._end)
                os.close(fd)
                self._fd = None
        self.next = -1
