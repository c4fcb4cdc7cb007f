"""The caches: a disk cache for expensive intermediates (captions, synthetic QA pairs), keyed by everything they
depend on, and the layer that puts it (and a memory of recent results) around a stage (`StageCache`).

Keys are hashes of JSON descriptions (settings, image file identity, question), so runs that change only
the prompt or the answerer reuse the captions of earlier runs. One SQLite file: safe to interrupt, and shared by
concurrent runs (write-ahead log: readers never wait, a writer waits its turn up to BUSY_TIMEOUT_S).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, TypeVar

from zsvqa.errors import InputError


# Bumped when what a cached value means changes, so old entries are never misread.
FORMAT = 1
# A write holds the lock for one small insert; waiting this long means something else is wrong.
BUSY_TIMEOUT_S = 60.0


class IntermediateCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"cache {str(self.path)!r} is a folder; give a file path for --cache, or --no-cache")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")  # with WAL, still safe against a crash
            self.connection.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT, value TEXT)")
            self.connection.commit()
        except (OSError, sqlite3.DatabaseError) as error:
            if hasattr(self, "connection"):
                self.connection.close()
            raise InputError(
                f"cache {str(self.path)!r} cannot be used as an SQLite cache ({error}); give another --cache, or --no-cache"
            ) from error
        self.misses = 0  # lookups that found nothing: how tests see what was recomputed

    @staticmethod
    def key(kind: str, description: dict[str, Any]) -> str:
        text = json.dumps({"kind": kind, "format": FORMAT, **description}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, kind: str, description: dict[str, Any]) -> Any | None:
        row = self.connection.execute(
            "SELECT value FROM entries WHERE key = ?", (self.key(kind, description),)
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        return json.loads(row[0])

    def put(self, kind: str, description: dict[str, Any], value: Any) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO entries (key, kind, value) VALUES (?, ?, ?)",
            (self.key(kind, description), kind, json.dumps(value)),
        )
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()


COMPUTED, MEMORY, DISK, REPEATED = "computed", "memory", "disk", "repeated"
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class Found(Generic[V]):
    value: V
    source: str  # COMPUTED now, read from MEMORY or DISK, or REPEATED (an earlier input of the same call)


class Recent:
    """The last `kept` values by key, in memory; the least recently used goes first."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.values: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        if key not in self.values:
            return None
        self.values.move_to_end(key)
        return self.values[key]

    def put(self, key: Hashable, value: Any) -> None:
        if self.kept:
            self.values[key] = value
            if len(self.values) > self.kept:
                self.values.popitem(last=False)


class StageCache(Generic[K, V]):
    """The caches around one stage's batched call, so that the stage never sees them (as lm-evaluation-harness's
    CachingLM wraps any model): each distinct input is looked up in memory (the last `kept` inputs, by the input
    itself), then on disk (by `describe(input)`: everything the stage's output depends on); the others are
    computed in one call and kept in both (on disk where `storable`). An input cached nowhere (no memory, and no
    disk or no description: an image in memory has no file to key on) is computed as given, repeats included."""

    def __init__(
        self,
        kind: str,
        disk: IntermediateCache | None,
        encode: Callable[[V], Any] = lambda value: value,
        decode: Callable[[Any], V] = lambda stored: stored,
        kept: int = 0,
        storable: Callable[[V], bool] = lambda value: True,
    ) -> None:
        self.kind = kind
        self.disk = disk
        self.encode, self.decode, self.storable = encode, decode, storable
        self.memory = Recent(kept)

    def __call__(
        self, inputs: list[K], compute: Callable[[list[K]], list[V]], describe: Callable[[K], dict[str, Any] | None]
    ) -> list[Found[V]]:
        """Each input's output and where it came from, in order."""
        results: list[Found[V] | None] = [None] * len(inputs)
        descriptions = [describe(item) if self.disk is not None else None for item in inputs]
        first: dict[K, int] = {}  # a cacheable input -> where it first came
        todo: list[int] = []
        for position, item in enumerate(inputs):
            if not self.memory.kept and descriptions[position] is None:
                todo.append(position)
            elif item not in first:
                first[item] = position
                results[position] = self._look_up(item, descriptions[position])
                if results[position] is None:
                    todo.append(position)
        for position, value in zip(todo, compute([inputs[p] for p in todo]) if todo else []):
            description = descriptions[position]
            if self.disk is not None and description is not None and self.storable(value):
                self.disk.put(self.kind, description, self.encode(value))
            self.memory.put(inputs[position], value)
            results[position] = Found(value, COMPUTED)
        return [found or Found(results[first[item]].value, REPEATED) for found, item in zip(results, inputs)]

    def _look_up(self, item: K, description: dict[str, Any] | None) -> Found[V] | None:
        value = self.memory.get(item)
        if value is not None:
            return Found(value, MEMORY)
        stored = self.disk.get(self.kind, description) if self.disk is not None and description is not None else None
        if stored is None:
            return None
        value = self.decode(stored)
        self.memory.put(item, value)
        return Found(value, DISK)

    def forget(self) -> None:
        """Drop what memory holds (the disk keeps its entries)."""
        self.memory.values.clear()
