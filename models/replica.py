"""Reads from a PostgreSQL streaming replica, while it keeps up with the primary.

With ANALYTICS_DATABASE_URL set, the read endpoints (analytics, fleet, series,
sessions, live state) query the replica; writes and the drain stay on the
primary. The contract's 5 s from ingest to visible must still hold, so each
process measures the replica's replay lag at most every LAG_PROBE_S and reads
from the primary instead while the lag is over MAX_REPLICA_LAG_S: a lagging
replica costs the primary some reads, never a stale answer past the bound.
A replica that does not answer is not replaced by the primary (that would move
the whole read load onto it at once, when it may be the reason): the read
endpoints answer 503 with Retry-After until it is back.

Lag is measured against the primary itself: the replica has caught up when it
has replayed the WAL position the primary had just before; otherwise the lag
is the time since the last transaction it replayed committed, which over-states
it after an idle spell, and so errs toward the primary.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

# How long a lag measurement is trusted: reads may see up to the bound plus this.
LAG_PROBE_S = 0.5

PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()")
REPLICA_LAG = text("""
    SELECT CASE
        WHEN NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn) THEN 0.0
        -- Behind: never 0, even when the last replayed commit is younger than this
        -- statement (now() is its start), so that 0 always means caught up.
        ELSE greatest(0.000001, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
    END
""")


def replica_lag_s(primary: Engine, replica: Engine) -> float:
    """Seconds the replica's replay is behind the primary (0: caught up).
    Raises the database's errors when either does not answer."""
    with primary.connect() as conn:
        lsn = conn.execute(PRIMARY_POSITION).scalar_one()
    with replica.connect() as conn:
        return float(conn.execute(REPLICA_LAG, {"lsn": str(lsn)}).scalar_one())


class ReadEngines:
    """The engine each read should use: the replica while it keeps up, else the primary."""

    def __init__(self, primary: Engine, replica: Engine | None, max_lag_s: float) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self._lag_s = 0.0
        self._measured_at = float("-inf")

    def lag_s(self) -> float:
        """The replica's lag now, measured afresh (0 without a replica)."""
        if self.replica is None:
            return 0.0
        self._lag_s = replica_lag_s(self.primary, self.replica)
        self._measured_at = time.monotonic()
        return self._lag_s

    def lagging(self) -> bool:
        """Whether the last measurement (at most LAG_PROBE_S old) is over the bound."""
        if self.replica is not None and time.monotonic() - self._measured_at > LAG_PROBE_S:
            self.lag_s()
        return self._lag_s > self.max_lag_s

    def for_reads(self) -> Engine:
        """The replica, unless there is none or it lags beyond the bound."""
        if self.replica is None or self.lagging():
            return self.primary
        return self.replica
