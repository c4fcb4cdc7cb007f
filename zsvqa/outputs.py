"""Output paths checked before any work starts, atomic file writes, and the run folder's lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from zsvqa.errors import InputError

LOCK_FILE = "run.lock"


def _can_create_in(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None. A real probe, because permission bits say nothing for root,
    /proc or a read-only mount."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".zsvqa-write-test-")
    except OSError as error:
        return error.strerror or str(error)
    os.close(handle)
    os.unlink(name)
    return None


def _check_folder_for(path: Path, folder: Path, what: str) -> None:
    """`folder` exists or can be made, and takes new files; errors name `path`, the output asked for."""
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"{what} {str(path)!r} cannot be made: {str(existing)!r} is a file")
    reason = _can_create_in(existing)
    if reason:
        raise InputError(f"{what} {str(path)!r} is not writable: cannot create files in {str(existing)!r} ({reason})")


def check_output_dir(path: str | Path, what: str) -> Path:
    """A folder that exists, or can be made, and takes new files; else an InputError naming `what` (e.g. --out)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a file, not a folder")
    _check_folder_for(path, path, what)
    return path


def check_output_file(path: str | Path, what: str, suffixes: Iterable[str] | None = None) -> Path:
    """A file that can be written (its folder made if needed), with one of `suffixes` (lower case, no dot)."""
    path = Path(path)
    if suffixes is not None:
        allowed = sorted(suffixes)
        if path.suffix.lower().lstrip(".") not in allowed:
            raise InputError(f"{what} {str(path)!r} needs one of the suffixes {', '.join('.' + s for s in allowed)}")
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder, not a file")
    _check_folder_for(path, path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {str(path)!r} is not writable")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Readers, and a rerun after a crash, see the old file or the new one, never half of one."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def locked_run_folder(folder: Path, name: str = LOCK_FILE, shared: bool = False) -> Iterator[None]:
    """Hold the folder's exclusive lock (`shared`: one of several holders, as the ranks of a sharded run are), or
    refuse naming the processes that hold it. The kernel drops a flock when its process ends, crash or kill -9
    included, so a stale lock file never blocks a rerun."""
    with (folder / name).open("a+", encoding="utf-8") as handle:
        try:
            alone = _try_lock(handle, fcntl.LOCK_EX)
            if alone:
                handle.truncate(0)  # pids an earlier run left
            if shared:  # the first rank holds the exclusive lock a moment before it shares: retry briefly
                if not any(_try_lock(handle, fcntl.LOCK_SH) or time.sleep(0.1) for _ in range(50)):
                    raise BlockingIOError
            elif not alone:
                raise BlockingIOError
        except BlockingIOError:
            handle.seek(0)
            holder = ", ".join(handle.read().split()) or "unknown"
            raise InputError(
                f"{str(folder)!r} is in use by another run (pid {holder}); wait for it to end, or give another --out"
            ) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield  # closing the file releases the lock


def _try_lock(handle: Any, mode: int) -> bool:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
