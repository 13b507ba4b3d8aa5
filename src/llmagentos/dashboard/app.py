"""The dashboard's web app: Starlette routes over the views, Jinja2 pages, Plotly charts.

Pages are rendered on the server from the run folders as they are at each request;
a page that shows something live re-fetches itself every two seconds (``live.js``).
With a ``token``, every request must carry it (``Authorization: Bearer``, or the
cookie a first visit with ``?token=`` sets); decisions (approve, refuse, resume)
are POSTs that must come from the dashboard's own page (a per-process CSRF token and
a same-origin check).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from llmagentos.dashboard import views
from llmagentos.exceptions import JournalError, LLMAgentOSError, RunLookupError

__all__ = ["Dashboard", "create_dashboard"]

_HERE = Path(__file__).parent
_COOKIE = "llmagentos_dashboard"
_MAX_FORM = 16_384
_HEADERS = {  # the page is never framed, and nothing it shows is sniffed as script
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _figure_json(spec: str) -> Any:
    """A figure's JSON, safe inside a ``<script>`` element (no ``</script>`` in it)."""
    from markupsafe import Markup

    text = spec.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text)


def _int(value: str | None, name: str) -> int:
    if value is None or not value.isdigit() or len(value) > 9:
        raise RunLookupError(name, f"{name} must be a whole number >= 0 (got {value!r})")
    return int(value)


class Dashboard:
    """The pages over one runs folder (see :func:`create_dashboard`)."""

    def __init__(
        self, runs: Path, *, token: str | None, gateway: Any = None, memory: Any = None
    ) -> None:
        import plotly

        self.root, self.token, self.gateway, self.memory = runs, token, gateway, memory
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))
        self.templates.env.filters["figure_json"] = _figure_json
        self.csrf = secrets.token_urlsafe(32)
        self.cookie = hashlib.sha256(token.encode()).hexdigest() if token else ""
        self.plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        self.app = Starlette(
            routes=[
                Route("/", self.index),
                Route("/readyz", self.ready),
                Route("/run", self.run),
                Route("/episode", self.episode),
                Route("/step", self.step),
                Route("/gateway", self.gateway_page),
                Route("/decide", self.decide, methods=["POST"]),
                Route("/static/plotly.min.js", self.plotly),
                Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
            ]
        )

    # -- rendering ------------------------------------------------------------------------

    def page(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        context = {"csrf": self.csrf, "gateway_on": self.gateway is not None, **context}
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(_HEADERS)
        return response

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.page(request, "error.html", {"title": title, "message": message}, status)

    # -- pages ----------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        state = None
        if self.memory is not None:
            try:
                state = self.memory.state()
            except LLMAgentOSError as err:
                state = {"problem": str(err)}
        return self.page(request, "index.html", views.overview(self.root, state) | {"live": True})

    async def run(self, request: Request) -> Response:
        try:
            data = views.run_page(self.root, request.query_params.get("id", ""))
        except RunLookupError as err:
            return self.error(request, 404, "not found", str(err))
        return self.page(request, "run.html", data)

    async def episode(self, request: Request) -> Response:
        params = request.query_params
        try:
            number = _int(params.get("e"), "episode")
            data = views.episode_page(self.root, params.get("id", ""), number)
        except RunLookupError as err:
            return self.error(request, 404, "not found", str(err))
        return self.page(request, "episode.html", data)

    async def step(self, request: Request) -> Response:
        params = request.query_params
        try:
            e, s = _int(params.get("e"), "episode"), _int(params.get("s"), "step")
            data = views.step_page(self.root, params.get("id", ""), e, s)
        except RunLookupError as err:
            return self.error(request, 404, "not found", str(err))
        return self.page(request, "step.html", data)

    async def gateway_page(self, request: Request) -> Response:
        if self.gateway is None:
            return self.error(request, 404, "no gateway", "start with --gateway URL to see one")
        view = await self.gateway.fetch()
        return self.page(request, "gateway.html", {"gateway": view.to_dict(), "live": True})

    async def ready(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def plotly(self, request: Request) -> Response:
        return FileResponse(self.plotly_js, media_type="text/javascript",
                            headers={"cache-control": "max-age=86400"})  # fmt: skip

    # -- decisions ------------------------------------------------------------------------

    async def decide(self, request: Request) -> Response:
        """Approve or refuse a request (the same call as ``llmagentos runs approve``),
        then, if asked, resume the run in its own process."""
        from llmagentos.durable.operator import decide, resume_in_background

        refused = self._foreign(request)
        if refused is not None:
            return refused
        if len(await request.body()) > _MAX_FORM:
            return self.error(request, 413, "too large", f"a form holds at most {_MAX_FORM} bytes")
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not hmac.compare_digest(fields.get("csrf", ""), self.csrf):
            return self.error(request, 403, "refused", "a stale or forged form: reload the page")
        choice, identifier = fields.get("decision"), fields.get("id", "")
        if choice not in ("approve", "refuse", "resume"):
            message = f"decision must be approve, refuse or resume (got {choice!r})"
            return self.error(request, 400, "bad request", message)
        try:
            folder = views.resolve_run(self.root, identifier).path
            if choice != "resume":
                decide(
                    folder, fields.get("key") or None, approve=choice == "approve",
                    by=(fields.get("by") or "dashboard")[:100], note=fields.get("note") or None,
                    digest=fields.get("digest") or None,
                )  # fmt: skip
            if choice == "resume" or fields.get("resume") == "on":
                resume_in_background(folder)
        except RunLookupError as err:
            return self.error(request, 404, "not found", str(err))
        except JournalError as err:
            return self.error(request, 409, "not decided", str(err))
        from urllib.parse import quote

        return RedirectResponse(f"run?id={quote(identifier)}", status_code=303)

    def _foreign(self, request: Request) -> Response | None:
        # A cross-site page cannot read the CSRF token, and browsers say where a POST
        # comes from: both must say it is this page.
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if site not in (None, "same-origin") or (origin and origin.split("://", 1)[-1] != host):
            return self.error(request, 403, "refused", "a cross-site request")
        return None

    # -- access ---------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        token = self.token
        if not token:
            return True
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:], token):
            return True
        return hmac.compare_digest(request.cookies.get(_COOKIE, ""), self.cookie)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if scope["path"] == "/readyz":  # for supervisors and tests: says nothing about runs
            await self.app(scope, receive, send)
            return
        given = request.query_params.get("token")
        if self.token and given is not None and hmac.compare_digest(given, self.token):
            # A first visit with ?token= gets the cookie, then the URL without the token.
            clean = str(request.url.remove_query_params("token"))
            response: Response = RedirectResponse(clean, 303)
            response.set_cookie(_COOKIE, self.cookie, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        if not self._authorised(request):
            response = Response(
                "unauthorised: open the dashboard with ?token=...\n", 401,
                headers={"www-authenticate": "Bearer", **_HEADERS},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_dashboard(
    runs: str | Path, *, token: str | None = None, gateway: Any = None, memory: Any = None
) -> Dashboard:
    """The dashboard as an ASGI app over the runs under ``runs``.

    Args:
        runs: the runs folder (it may be missing or hold broken runs: both are shown).
        token: required of every request when given (bind beyond 127.0.0.1 only with one).
        gateway: a :class:`~llmagentos.dashboard.gateway_view.GatewayWatcher` to show.
        memory: a :class:`~llmagentos.memory.MemoryManager` whose namespaces to show.
    """
    return Dashboard(Path(runs), token=token, gateway=gateway, memory=memory)
