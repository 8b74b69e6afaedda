"""`python -m workers ...`: the `celery --app workers.app ...` command (the Procfile's worker).

It exists for what must happen before Celery starts:
- PROMETHEUS_MULTIPROC_DIR is set before anything imports prometheus_client:
  Celery's command line loads Flower's plugin, which imports it, and it picks
  where metrics live on import. The pool's forked processes then keep their
  metrics in files there, which the main process sums for /metrics
  (workers/metrics.py). The folder is this process's own, removed when it
  exits; folders of processes that died without removing theirs are removed
  at the next start.
- `worker` gets a node name of its own, `worker-<pid>@<host>`, unless one is
  given with -n/--hostname: several workers on one host (honcho with
  concurrency, or started by hand) would otherwise all be `celery@<host>`,
  which Celery and Flower take for one node. In containers the host part
  (the container id) tells them apart.
- Logging is set up first, in our JSON lines: Celery warns before it sets up
  logging, and `flower` (tornado) adds no handler of its own where there is one.
- Celery's start-up banner (about 30 lines a process) is left out: the JSON
  log line "worker-...@host ready." says the same.
"""

import os
import sys

from inmemory import metrics_dir
from logconfig import configure_logging
from settings import load_or_exit

NAME_OPTIONS = ("-n", "--hostname")


def worker_defaults(args: list[str]) -> list[str]:
    """The command line, with a per-process node name if it starts a worker without
    one, and without Celery's gossip: nothing here uses it (Flower builds its view
    from task events and heartbeats), and after a broker outage of a minute its
    restart failed with an ERROR traceback on every reconnection."""
    if "worker" not in args:
        return args
    extra = [] if "--without-gossip" in args else ["--without-gossip"]
    if not any(a in NAME_OPTIONS or a.startswith("--hostname=") for a in args):
        extra += ["--hostname", f"worker-{os.getpid()}@%h"]
    return [*args, *extra]


settings = load_or_exit()  # a bad setting: one line and status 2, before Celery starts
args = sys.argv[1:]
if "worker" in args:
    metrics_dir("energy-worker-metrics-")
# From the start: Celery sets it up again later, the same way.
configure_logging(log_format=settings.log_format, level=settings.log_level)

from celery.__main__ import main  # noqa: E402

quiet = ["--quiet"] if "worker" in args else []  # only the banner: --quiet also mutes inspect's answers
sys.argv = ["celery", "--app", "workers.app", *quiet, *worker_defaults(args)]
main()
