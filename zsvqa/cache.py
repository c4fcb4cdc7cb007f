"""A disk cache for expensive intermediates (captions, synthetic QA pairs), keyed by everything they depend on.

Keys are hashes of JSON descriptions (settings, image file identity, question), so runs that change only
the prompt or the answerer reuse the captions of earlier runs. One SQLite file: safe to interrupt, and shared by
concurrent runs (write-ahead log: readers never wait, a writer waits its turn up to BUSY_TIMEOUT_S).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from zsvqa.errors import InputError

# Bumped when what a cached value means changes, so old entries are never misread.
FORMAT = 1
# A write holds the lock for one small insert; waiting this long means something else is wrong.
BUSY_TIMEOUT_S = 60.0


def file_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a file's content cheaply: its resolved path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


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
