"""RFC 3339 timestamps: strict parsing (a zone is required) and UTC formatting."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d would also match other scripts' digits
)


def parse_rfc3339(value: str) -> datetime:
    """The instant `value` names, in UTC; fractions beyond microseconds are dropped.

    Raises ValueError for anything that is not an RFC 3339 date-time with a zone.
    """
    match = RFC3339.fullmatch(value)
    if not match:
        raise ValueError("not an RFC 3339 date-time with a time zone")
    if match[7] is None or len(match[7]) <= 6:
        # The regex has vouched for the form; the C parser builds it ten times faster.
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # e.g. a lower-case z, or a date out of range: the slow path says which
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    offset = timedelta(0)
    if not zulu:
        if int(oh) > 23 or int(om) > 59:
            raise ValueError("time zone offset out of range")
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     micros, tzinfo=timezone(offset))
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None


def format_rfc3339(value: datetime) -> str:
    """UTC, with a Z, and with microseconds only when there are any."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
