"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright)
against a running stack: gunicorn as the Procfile runs it, a Celery worker, and six
hours of a simulated fleet with degraded vehicles.

Each view must load with no console error and no failed request; the test saves a
screenshot of each under SCREENSHOTS: DASHBOARD_SCREENSHOTS (`make screenshots`
sets docs/screenshots/, shown in the README), else a temporary folder, so that a
test run leaves the checkout as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from simulator import backfill
from tests.conftest import INGEST, OPERATOR, wait_for
from workers.alerts import evaluate_alerts

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS",
                                  Path(tempfile.gettempdir()) / "energy-dashboard-screenshots"))
VEHICLES = 30
TOKEN = OPERATOR["Authorization"].split()[1]
TIMEOUT_MS = 30_000  # a loaded machine: generous, and polled

# The colours the dashboard draws its series with (web/dashboard/static/dashboard.js).
BLUE, RED = (31, 95, 191), (180, 35, 24)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def stack(gunicorn, worker_factory, settings, engine, database_url):
    """The web process, a worker, and a fleet's history with its alerts evaluated."""
    worker_factory()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    summary = backfill.run(database_url, vehicles=VEHICLES, meters=VEHICLES, hours=6, end=now,
                           degraded=3, seed=7, progress=False)
    evaluate_alerts(engine, settings, now)
    return {"url": f"http://127.0.0.1:{gunicorn.port}", "degraded": sorted(summary.degraded)}


class Watched:
    """A page whose console errors and failed requests are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))

    def assert_clean(self) -> None:
        assert self.problems == []


@pytest.fixture
def watched(browser) -> Watched:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    yield Watched(context.new_page())
    context.close()


def sign_in(page: Page, base: str, query: str = "", token: str = TOKEN) -> None:
    page.goto(f"{base}/dashboard{query}")
    page.fill("#token-input", token)
    page.click("#token-form button")


def has_drawn(page: Page, selector: str, rgb: tuple[int, int, int]) -> bool:
    """Whether the chart's canvas holds pixels of the series' colour (axes alone do not count)."""
    return page.evaluate("""([selector, rgb]) => {
        const canvas = document.querySelector(selector + " canvas");
        if (!canvas || !canvas.width) return false;
        const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0 && Math.abs(d[i] - rgb[0]) < 12 && Math.abs(d[i + 1] - rgb[1]) < 12
                && Math.abs(d[i + 2] - rgb[2]) < 12) return true;
        }
        return false;
    }""", [selector, list(rgb)])


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def first_cells(page: Page, table: str) -> list[str]:
    return page.locator(f"{table} tbody tr td:first-child").all_inner_texts()


def test_fleet_view_lists_sorts_and_pages_the_vehicles_and_draws(stack, watched):
    page = watched.page
    sign_in(page, stack["url"])
    rows = page.locator("#vehicles-table tbody tr.clickable")
    expect(rows).to_have_count(25)
    expect(page.locator("#vehicles-count")).to_have_text(f"1–25 of {VEHICLES}")
    assert "Bearer" not in page.url and TOKEN not in page.url
    assert page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]") == [1, 0, ""]

    page.click("#vehicles-table th[data-sort=vehicleId]")
    expect(rows.first.locator("td").first).to_have_text("V-01")
    page.click("#vehicles-table th[data-sort=vehicleId]")
    expect(rows.first.locator("td").first).to_have_text(f"V-{VEHICLES}")
    page.click("#page-next")
    expect(rows).to_have_count(VEHICLES - 25)
    expect(page.locator("#vehicles-count")).to_have_text(f"26–{VEHICLES} of {VEHICLES}")
    assert first_cells(page, "#vehicles-table")[-1] == "V-01"
    page.click("#page-prev")
    expect(rows).to_have_count(25)
    page.click("#vehicles-table th[data-sort=efficiency]")  # worst first
    expect(page.locator("#vehicles-table th[data-sort=efficiency]")).to_have_class(re.compile("sorted-asc"))
    worst_three = first_cells(page, "#vehicles-table")[:3]
    assert sorted(worst_three) == stack["degraded"]

    page.wait_for_function("() => document.querySelector('#histogram canvas') !== null")
    assert has_drawn(page, "#histogram", BLUE)
    expect(page.locator("#alerts-table tbody")).to_contain_text("low_efficiency")
    expect(page.locator("#worst-sessions tbody tr.clickable")).to_have_count(10)
    screenshot(page, "fleet")
    watched.assert_clean()


def call(base: str, path: str, headers: dict, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data,
                                     headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def stored(base: str, vehicle_id: str) -> bool:
    try:
        return bool(call(base, f"/v1/live/vehicles/{vehicle_id}", OPERATOR))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def test_the_page_refreshes_itself_every_30_seconds(stack, watched):
    page = watched.page
    page.clock.install()
    sign_in(page, stack["url"])
    expect(page.locator("#vehicles-count")).to_have_text(f"1–25 of {VEHICLES}")
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    reading = {"vehicleId": "V-NEW", "soc": 50, "kwhDeliveredDc": 0.1, "batteryTemp": 20, "timestamp": now}
    call(stack["url"], "/v1/ingest", INGEST, reading)
    wait_for(lambda: stored(stack["url"], "V-NEW"), 30, "the worker to store it")
    page.clock.run_for(29_000)
    expect(page.locator("#vehicles-count")).to_have_text(f"1–25 of {VEHICLES}")
    page.clock.run_for(2_000)
    expect(page.locator("#vehicles-count")).to_have_text(f"1–25 of {VEHICLES + 1}")
    watched.assert_clean()


def test_clicking_a_degraded_vehicle_shows_its_alert_and_worst_session(stack, watched):
    page = watched.page
    degraded = stack["degraded"][0]
    sign_in(page, stack["url"])
    page.fill("#vehicle-search", degraded)
    rows = page.locator("#vehicles-table tbody tr.clickable")
    expect(rows).to_have_count(1)
    rows.first.click()
    expect(page.locator("#vehicle-title")).to_have_text(f"Vehicle {degraded}")
    assert f"vehicle={degraded}" in page.url
    expect(page.locator("#vehicle-alerts")).to_contain_text("low_efficiency")
    expect(page.locator("#vehicle-alerts")).to_contain_text("worst session")
    expect(page.locator("#vehicle-sessions tbody")).to_contain_text("(worst)")
    expect(page.locator("#meter-links tbody")).to_contain_text(degraded)
    page.wait_for_function("() => document.querySelectorAll('.chart canvas').length === 3")
    assert has_drawn(page, "#chart-energy", RED)
    assert has_drawn(page, "#chart-efficiency", BLUE)
    screenshot(page, "vehicle")

    # A shared link opens the same view: the vehicle and window are in the URL.
    page.goto(page.url)
    expect(page.locator("#vehicle-title")).to_have_text(f"Vehicle {degraded}")
    watched.assert_clean()


def workers_alive(base: str) -> list[str]:
    request = urllib.request.Request(f"{base}/v1/pipeline", headers=OPERATOR)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["workers"]


def test_pipeline_view_shows_the_worker_and_links_to_flower(stack, watched):
    wait_for(lambda: workers_alive(stack["url"]), 60, "the worker to answer pings")
    page = watched.page
    sign_in(page, stack["url"], "?view=pipeline")
    expect(page.locator("#pipeline-cards")).to_contain_text("Backlog")
    expect(page.locator("#flower-link")).to_have_attribute("href", "http://127.0.0.1:5555/")
    expect(page.locator("#workers li").first).to_contain_text("test-")
    screenshot(page, "pipeline")
    watched.assert_clean()


def test_a_wrong_token_shows_a_clear_message(stack, watched):
    page = watched.page
    sign_in(page, stack["url"], token="not-a-token")
    expect(page.locator("#token-error")).to_contain_text("not accepted")
    expect(page.locator("#view-fleet")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    sign_in(page, stack["url"], token="test-ingest")
    expect(page.locator("#token-error")).to_contain_text("operator token is needed")
    screenshot(page, "wrong-token")


def test_dashboard_is_served_with_strict_security_headers(stack):
    with urllib.request.urlopen(f"{stack['url']}/dashboard", timeout=10) as response:
        html = response.read().decode()
        headers = response.headers
    assert response.status == 200 and "text/html" in headers["Content-Type"]
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in html  # no inline script: every script has a src
    with urllib.request.urlopen(f"{stack['url']}/dashboard/static/uPlot.iife.min.js", timeout=10) as script:
        assert script.status == 200 and script.headers["X-Content-Type-Options"] == "nosniff"
