"""The dashboard's routes: sign-in and sign-out, the RACE page, its CSV links, the target editor, and
/docs with Swagger UI served from here (no request leaves for another host)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from app.api import targets as targets_api
from app.api.deps import Conn, Pool, SettingsDep, auth_failed, check_failures
from app.config import Settings
from app.dashboard import auth, panels
from app.domain import dashboard as view_logic
from app.errors import BadRequest, TooManyRequests
from app.store import sites as site_store

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 64 * 1024
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TIME_ZONES = (
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome", "Europe/Warsaw",
    "Europe/Helsinki", "Europe/Istanbul", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore", "Asia/Shanghai",
    "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland", "America/Sao_Paulo", "America/St_Johns",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Pacific/Honolulu",
)  # fmt: skip

templates = Environment(
    loader=PackageLoader("app.dashboard", "templates"), autoescape=select_autoescape(default=True), trim_blocks=True,
    lstrip_blocks=True,
)  # fmt: skip
templates.filters["kpi"] = lambda value, kpi: view_logic.kpi_text(kpi, value)
templates.filters["pct"] = view_logic.ratio_text
templates.filters["signed"] = lambda value: view_logic.ratio_text(value, signed=True)


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _raw(value: Any) -> str:
    """A value exactly as the API answers it, for data-value attributes (tests, copy-paste)."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


templates.filters["num"] = _number
templates.filters["raw"] = _raw
templates.globals["labels"] = view_logic.KPI_LABELS


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status, headers=PAGE_HEADERS)


def _secret(settings: Settings) -> str:
    return settings.session_secret.get_secret_value() if settings.session_secret else ""


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("form too large", "payload_too_large", [{"field": "body", "message": "at most 64 KB"}])
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path of this dashboard only (no open redirect)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


def _to_signin(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/dashboard/signin?" + urlencode({"next": here}), status_code=303)


def _forbidden(message: str) -> HTMLResponse:
    return _page("message.html", 403, title="Not allowed", message=message)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard/signin")
async def signin_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _signin_form(request, _local_path(next))


def _signin_form(request: Request, target: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = auth.new_signin_token()
    response = _page("signin.html", status, csrf=token, next=target, error=error)
    auth.set_signin_token(response, request, token)
    return response


@router.post("/dashboard/signin")
async def signin(request: Request, conn: Conn, settings: SettingsDep) -> Response:
    form = await _form(request)
    target = _local_path(form.get("next"))
    if not auth.same_origin(request) or not auth.signin_token_ok(request, form.get("csrf", "")):
        return _signin_form(request, target, "The sign-in form expired. Please type your key again.", 403)
    key = form.get("key", "").strip()
    try:
        await check_failures(request)  # the failed-authentication limit of the API's keys covers this form too
        found = await site_store.site_by_secret_key(conn, key) if key else None
        if found is None and key:
            await auth_failed(request, "dashboard", key)
    except TooManyRequests as exc:
        await exc.hold()
        message = "Too many failed sign-ins from your network. Wait a minute, then try again."
        refused = _signin_form(request, target, message, 429)
        refused.headers.update(exc.headers())
        return refused
    if found is None:
        message = "That key is not a read or admin key of any site here. Check it and try again."
        return _signin_form(request, target, message if key else "Type your site's read or admin key.", 401)
    site, kind = found
    response = RedirectResponse(target, status_code=303)
    cookie = auth.session_cookie(
        site.site_id, "admin" if kind == "admin" else "read", site_store.hash_key(key), _secret(settings)
    )
    auth.set_session(response, request, cookie)
    response.delete_cookie(auth.SIGNIN_COOKIE, path=auth.SIGNIN_PATH)
    return response


@router.post("/dashboard/signout")
async def signout(request: Request, conn: Conn, settings: SettingsDep) -> Response:
    session = await auth.session_of(request, conn, _secret(settings))
    form = await _form(request)
    if session is not None and (not auth.same_origin(request) or form.get("csrf") != session.csrf_token()):
        return _forbidden("This sign-out did not come from the dashboard's own page.")
    response = RedirectResponse("/dashboard/signin", status_code=303)
    auth.clear_session(response, request)
    return response


def _view(request: Request, site: Any) -> panels.View | HTMLResponse:
    try:
        return panels.View.of(request.query_params, site, datetime.now(UTC))
    except BadRequest as exc:
        return _page("message.html", 400, title="That view cannot be shown", message=exc.message, back="/dashboard")


@router.get("/dashboard")
async def dashboard(request: Request, pool: Pool, conn: Conn, settings: SettingsDep) -> Response:
    session = await auth.session_of(request, conn, _secret(settings))
    if session is None:
        return _to_signin(request)
    view = _view(request, session.site)
    if isinstance(view, HTMLResponse):
        return view
    now = datetime.now(UTC)
    data = await panels.load(pool, settings, session.site, view, now)
    return _page(
        "dashboard.html",
        session=session,
        view=view,
        data=data,
        presets=view_logic.PRESETS,
        zones=TIME_ZONES if view.tz in TIME_ZONES else (view.tz, *TIME_ZONES),
        breakdowns=("channel", "peso", "source", "medium", "campaign", "device"),
        granularities=("day", "week", "month"),
        kpi_names=[k for stage in data["stages"] for k in (c["kpi"] for c in stage["kpis"])],
        panels=panels.CSV_PANELS,
        saved=request.query_params.get("saved"),
        chart_json=_chart_json(data["chart"]),
    )


def _chart_json(chart: dict[str, Any]) -> str:
    """The chart's numbers for the page's script (JSON in a data block, never executed)."""

    def clean(values: list[Any]) -> list[Any]:
        return [None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in values]

    data = {**chart, "values": clean(chart["values"]), "before": clean(chart["before"])}
    return orjson.dumps(data).decode().replace("</", "<\\/")


@router.get("/dashboard/csv/{panel}")
async def panel_csv(panel: str, request: Request, pool: Pool, conn: Conn, settings: SettingsDep) -> Response:
    session = await auth.session_of(request, conn, _secret(settings))
    if session is None:
        return _to_signin(request)
    if panel not in panels.CSV_PANELS:
        return _page("message.html", 404, title="No such panel", message=f"There is no panel {panel!r}.")
    view = _view(request, session.site)
    if isinstance(view, HTMLResponse):
        return view
    return await panels.csv_of(pool, settings, session.site, view, panel)


@router.post("/dashboard/targets")
async def save_targets(request: Request, conn: Conn, settings: SettingsDep) -> Response:
    """The target editor: the form's values go through PUT /v1/targets' own handler and model."""
    session = await auth.session_of(request, conn, _secret(settings))
    if session is None:
        return _to_signin(request)
    form = await _form(request)
    if not auth.same_origin(request) or form.get("csrf") != session.csrf_token():
        return _forbidden("This change did not come from the dashboard's own page; nothing was saved.")
    if not session.can_edit:
        return _forbidden("Targets can be changed only when signed in with the site's admin key.")
    month = form.get("month", "")
    rows = [
        {"kpi": name.removeprefix("target_"), "month": month, "value": value.strip().replace(",", "")}
        for name, value in form.items()
        if name.startswith("target_") and value.strip()
    ]
    back = _local_path(form.get("back"))
    if not rows:
        return RedirectResponse(back, status_code=303)
    try:
        body = targets_api.TargetsIn.model_validate({"targets": rows})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _page("message.html", 400, title="Targets not saved", message=problems, back=back)
    request.state.key_kind = "admin (dashboard)"  # the audit log names the actor; the session holds no key id
    await targets_api.put_targets(body, request, session.site, conn)
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}saved={len(rows)}", status_code=303)


async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Racetrack API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


def install(app: FastAPI) -> None:
    """Mount the dashboard, its static files, and a /docs whose assets come from this server."""
    app.include_router(router)
    app.add_api_route("/docs", swagger_ui, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
