"""`Accept: text/csv` on the analytics lists: the same rows as the JSON, one per line,
with a header row, for spreadsheets."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response, request


def wants_csv() -> bool:
    """True when the client prefers CSV to JSON (JSON wins a tie, such as `*/*`)."""
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns (readings.meter); lists one cell, space-separated."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[prefix + key] = " ".join(map(str, value))
        else:
            out[prefix + key] = "" if value is None else value
    return out


def csv_response(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    """The rows as CSV; `columns` names the header (and order) even when there are no rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(_flat(row) for row in rows)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def negotiated(body: dict[str, Any], rows_key: str, columns: list[str], filename: str):
    """`body` as JSON, or its list `rows_key` as CSV when the client asks for it."""
    if wants_csv():
        return csv_response(body[rows_key], columns, filename)
    return body
