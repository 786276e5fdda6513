"""One writer per outdir: an advisory lock on `OUTDIR/.atlas.lock`, held by the Snakemake process throughout.

The lock is an `fcntl.flock` on the open file, so the kernel releases it when the holder exits, however it
ends (kill -9, a crash, a lost node on NFSv4, which maps flock to byte-range locks): a stale lock cannot stay
held. The file also records the holder (host, pid, start time, working directory, command) so a second run
can name the first; a record left by a run that ended without releasing is just overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".atlas.lock"


class OutdirLocked(RuntimeError):
    """Another run holds the outdir; the message names it."""


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
        f" in {holder.get('cwd')!r}"
    )


class OutdirLock:
    def __init__(self, outdir: str | Path):
        self.path = Path(outdir) / LOCK_NAME
        self._handle = None
        self.previous: dict = {}  # the record found when the lock was taken (a run that did not release)

    def acquire(self) -> OutdirLock:
        """Take the lock or raise OutdirLocked naming its holder. Never blocks."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115  (held open for the life of the run)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(handle)
            handle.close()
            raise OutdirLocked(
                f"outdir {str(self.path.parent)!r} is in use by another atlas run: {describe(holder)}.\n"
                f"Wait for it to finish, or stop it; one run at a time writes an outdir (lock: {self.path})."
            ) from None
        self.previous = _read(handle)
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cwd": os.getcwd(),
            "command": " ".join(sys.argv),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _read(handle) -> dict:
    handle.seek(0)
    text = handle.read().strip()
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"record": text[:200]}
