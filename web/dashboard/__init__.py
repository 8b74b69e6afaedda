"""GET /dashboard: the operators' page. Static files (no build step, no CDN) that call
the same JSON endpoints as any client, with the operator token the user types in,
kept in the tab's sessionStorage only; this blueprint serves them without a token.

Every response of the blueprint carries a strict Content-Security-Policy (scripts
and styles from this origin only, no inline script; no framing).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request

bp = Blueprint("dashboard", __name__, template_folder="templates",
               static_folder="static", static_url_path="/dashboard/static")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


def flower_url() -> str:
    """Flower's address: FLOWER_URL, else this host on FLOWER_PORT."""
    settings = current_app.config["SETTINGS"]
    if settings.flower_url:
        return settings.flower_url
    return f"{request.scheme}://{request.host.rsplit(':', 1)[0]}:{settings.flower_port}/"


@bp.get("/dashboard")
def dashboard():
    return render_template("dashboard.html", flower_url=flower_url(),
                           alert_threshold=current_app.config["SETTINGS"].alert_threshold)


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response
