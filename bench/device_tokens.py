"""Provisioning for the per-device-token variant of scenario 1 (bench/wrk/ingest_devices.lua).

`provision_devices` registers DEVICES devices (half meters, half vehicles) through
POST /v1/devices with the operator token, in arrays of CHUNK, and writes their
tokens to a file wrk reads, one device a line: "meter|vehicle ID TOKEN". The file
is readable by its owner only: it holds live credentials. Standard library only,
like the rest of the bench's client side.

    python bench/device_tokens.py URL OPERATOR_TOKEN PREFIX OUT [DEVICES]
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

DEVICES = 10_000
CHUNK = 1_000


def device_ids(prefix: str, count: int) -> list[tuple[str, str]]:
    """(kind, id) of `count` devices, meters and vehicles alternating."""
    return [("meter", f"{prefix}M{i // 2}") if i % 2 == 0 else ("vehicle", f"{prefix}V{i // 2}")
            for i in range(count)]


def register(url: str, operator_token: str, devices: list[tuple[str, str]]) -> list[str]:
    """Tokens of newly registered devices, in the order given (ValueError if refused)."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/devices", method="POST",
        data=json.dumps([{"id": i, "kind": k} for k, i in devices]).encode(),
        headers={"Authorization": f"Bearer {operator_token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            created = json.load(response)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"POST /v1/devices answered {exc.code}: {exc.read()[:200]!r}") from None
    return [d["token"] for d in created]


def provision_devices(url: str, operator_token: str, prefix: str, out: Path,
                      count: int = DEVICES) -> Path:
    """Register `count` devices whose ids start with `prefix` (fresh ones: 409 if they
    exist) and write "kind id token" lines to `out`; returns `out`."""
    devices = device_ids(prefix, count)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as lines:
        for start in range(0, count, CHUNK):
            chunk = devices[start:start + CHUNK]
            for (kind, device_id), token in zip(chunk, register(url, operator_token, chunk), strict=True):
                lines.write(f"{kind} {device_id} {token}\n")
    return out


if __name__ == "__main__":
    url_, token_, prefix_, out_ = sys.argv[1:5]
    written = provision_devices(url_, token_, prefix_, Path(out_),
                                int(sys.argv[5]) if len(sys.argv) > 5 else DEVICES)
    print(f"{written}: {sum(1 for _ in written.open())} device tokens")
