"""Where files that a process writes all the time go: in memory (/dev/shm) where there is one.

On a disk-backed file system a write can wait for the journal, seconds while
PostgreSQL writes heavily, and the whole process with it. Two such files: the
Prometheus metrics each process writes through mmap (summed by /metrics), and
gunicorn's worker heartbeat (web/server/gunicorn_conf.py). Standard library
only: gunicorn's master and `python -m workers` import it before anything else.

Each metrics folder is named after the process that made it and removed when
that process exits; one left by a process that was killed is removed by the
next process that makes a folder with the same prefix. Without this, every
start left a folder behind in /dev/shm.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

IN_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None


def metrics_dir(prefix: str) -> None:
    """Point PROMETHEUS_MULTIPROC_DIR (unless set) at a new folder `<prefix><pid>-<random>`
    of this process's own, removed when it exits.

    Must run before prometheus_client is imported: it picks where metrics live then.
    """
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    remove_orphans(prefix)
    owner = os.getpid()
    path = tempfile.mkdtemp(prefix=f"{prefix}{owner}-", dir=IN_MEMORY)
    atexit.register(_remove, path, owner)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def _remove(path: str, owner: int) -> None:
    # Forked children inherit atexit handlers (billiard's and gunicorn's end with
    # os._exit, but a child that exits normally must not take the folder with it).
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphans(prefix: str) -> None:
    """Remove the folders with this prefix whose process no longer runs."""
    for path in Path(IN_MEMORY or tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
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
