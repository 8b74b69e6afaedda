"""`python -m workers ...`: the `celery --app workers.app ...` command (the Procfile's worker).

It exists to set PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus_client: Celery's command line loads Flower's plugin, which imports
it, and it picks where metrics live on import. The pool's forked processes
then keep their metrics in files there, which the main process sums for
/metrics (workers/metrics.py).
"""

import sys

from inmemory import metrics_dir

metrics_dir("energy-worker-metrics-")

from celery.__main__ import main  # noqa: E402

from settings import load_or_exit  # noqa: E402

load_or_exit()  # a bad setting: one line and status 2, before Celery starts

sys.argv = ["celery", "--app", "workers.app", *sys.argv[1:]]
main()
