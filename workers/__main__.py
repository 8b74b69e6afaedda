"""`python -m workers ...`: the `celery --app workers.app ...` command (the Procfile's worker).

It exists to set PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus_client: Celery's command line loads Flower's plugin, which imports
it, and it picks where metrics live on import. The pool's forked processes
then keep their metrics in files there, which the main process sums for
/metrics (workers/metrics.py).
"""

import os
import sys
import tempfile

# In memory where there is /dev/shm: a pool process writes its metrics through
# mmap, and a write to a disk-backed file can wait seconds for the file
# system's journal while PostgreSQL writes heavily (web/gunicorn_conf.py).
IN_MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                      tempfile.mkdtemp(prefix="energy-worker-metrics-", dir=IN_MEMORY))

from celery.__main__ import main  # noqa: E402

from settings import load_or_exit  # noqa: E402

load_or_exit()  # a bad setting: one line and status 2, before Celery starts

sys.argv = ["celery", "--app", "workers.app", *sys.argv[1:]]
main()
