"""Folders for prometheus_client's multiprocess files, one per web or worker
main process (PROMETHEUS_MULTIPROC_DIR), which its forked children write and
its /metrics sums.

Each folder is named after the process that made it and removed when that
process exits; one left by a process that was killed is removed by the next
process that makes a folder with the same prefix. Without this, every start
left a folder behind in /dev/shm.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# In memory where there is /dev/shm: each process writes its metrics through
# mmap, and a write to a disk-backed file can wait seconds for the file
# system's journal while PostgreSQL writes heavily.
IN_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None


def metrics_dir(prefix: str) -> str:
    """A new folder `<prefix>-<pid>-<random>` for this process, removed when it exits."""
    remove_orphans(prefix)
    owner = os.getpid()
    path = tempfile.mkdtemp(prefix=f"{prefix}-{owner}-", dir=IN_MEMORY)
    atexit.register(_remove, path, owner)
    return path


def _remove(path: str, owner: int) -> None:
    # Forked children inherit atexit handlers (billiard's and gunicorn's end with
    # os._exit, but a child that exits normally must not take the folder with it).
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphans(prefix: str) -> None:
    """Remove the folders with this prefix whose process no longer runs."""
    for path in Path(IN_MEMORY or tempfile.gettempdir()).glob(f"{prefix}-*-*"):
        pid = path.name[len(prefix) + 1:].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
