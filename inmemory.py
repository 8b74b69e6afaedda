"""Where files that a process writes all the time go: in memory (/dev/shm) where there is one.

On a disk-backed file system a write can wait for the journal, seconds while
PostgreSQL writes heavily, and the whole process with it. Two such files: the
Prometheus metrics each process writes through mmap (summed by /metrics), and
gunicorn's worker heartbeat (web/server/gunicorn_conf.py). Standard library
only: gunicorn's master and `python -m workers` import it before anything else.
"""

from __future__ import annotations

import os
import tempfile

IN_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None


def metrics_dir(prefix: str) -> None:
    """Point PROMETHEUS_MULTIPROC_DIR (unless set) at a new directory in memory.

    Must run before prometheus_client is imported: it picks where metrics live then.
    """
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix=prefix, dir=IN_MEMORY))
