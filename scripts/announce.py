"""Print where `make run`'s processes answer, once web is ready: the last thing
on the screen rather than a block that the start-up lines scroll away.

Run by `make run` in the background under `honcho run` (so with `.env` loaded).
Gives up quietly after WAIT_S if web never answers: its own log says why.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

WAIT_S = 120.0


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main() -> None:
    web = f"http://localhost:{os.environ.get('PORT', '8000')}"
    deadline = time.monotonic() + WAIT_S
    while not ready(web):
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)
    user = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")[0]
    print("\n".join([
        "",
        "=" * 72,
        f"web:    {web}",
        f"flower: http://localhost:{os.environ.get('FLOWER_PORT', '5555')}"
        f" (user {user}; password in FLOWER_BASIC_AUTH in .env)",
        f"ingest tokens:   {os.environ.get('INGEST_TOKENS', '')}",
        f"operator tokens: {os.environ.get('OPERATOR_TOKENS', '')}",
        "Ctrl-C stops them all.",
        "=" * 72,
        "",
    ]), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C on make run before web answered
        pass
