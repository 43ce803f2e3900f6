"""The web page of `tonic serve`: an ASGI app (Starlette, a kept library) over the
notebooks' live states.

Safe by default (Jupyter's rule): every route wants the token printed at start, in the
URL (`?token=`, then kept in a strict same-site cookie) or, for an edit, in the
`X-Tonic-Token` header, which another site's form or script cannot send. Only the
loopback host names are served (no DNS rebinding). The page's own script runs by its
nonce alone; a notebook's HTML output is a sandboxed frame without scripts, with an
origin of its own, so it can neither read the token nor act on the page.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Sequence

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from tonic.export.page import GENERATOR, environment, style
from tonic.live.edit import EditRefused, edit_cell
from tonic.live.state import Event, LiveNotebook

COOKIE = "tonic-token"
PING_SECONDS = 15  # a comment on an idle event stream, so that a lost page is noticed
HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def csp(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


class Pages:
    """The routes' bodies, over the notebooks served and their token."""

    def __init__(self, notebooks: Sequence[LiveNotebook], token: str) -> None:
        self.notebooks = notebooks
        self.token = token

    def allowed(self, request: Request, *, header_only: bool = False) -> bool:
        given = request.headers.get("x-tonic-token", "")
        if not header_only:
            query, cookie = request.query_params.get("token", ""), request.cookies.get(COOKIE, "")
            given = given or query or cookie
        return hmac.compare_digest(given.encode(), self.token.encode())

    def notebook(self, request: Request) -> LiveNotebook | None:
        try:
            number = int(request.path_params.get("number", 0))
        except ValueError:
            return None
        return self.notebooks[number] if 0 <= number < len(self.notebooks) else None

    async def page(self, request: Request) -> Response:
        if not self.allowed(request):
            return _refused()
        if request.url.path == "/" and len(self.notebooks) > 1:
            return self.kept(request, _index(self.notebooks))
        nb = self.notebook(request)
        if nb is None:
            return _no_such()
        nonce = secrets.token_urlsafe(16)
        html = (
            environment()
            .get_template("live.html.j2")
            .render(
                title=nb.name,
                generator=GENERATOR,
                style=style(),
                base=f"/n/{nb.number}",
                token=self.token,
                nonce=nonce,
                **nb.body(),
            )
        )
        return self.kept(request, HTMLResponse(html, headers=_headers(nonce)))

    def kept(self, request: Request, response: Response) -> Response:
        """The response, with the token kept in a cookie when the URL gave it."""
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response

    async def events(self, request: Request) -> Response:
        nb = self.notebook(request) if self.allowed(request) else None
        if nb is None:
            return _refused() if not self.allowed(request) else _no_such()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        viewer = nb.watch(asyncio.get_running_loop(), queue)

        async def stream() -> AsyncIterator[str]:
            try:
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), PING_SECONDS)
                    except TimeoutError:
                        yield ": ping\n\n"
                        continue
                    yield f"data: {json.dumps(event)}\n\n"
            finally:
                nb.unwatch(viewer)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def edit(self, request: Request) -> Response:
        if not self.allowed(request, header_only=True):
            return JSONResponse({"error": "the token is missing"}, status_code=403)
        nb = self.notebook(request)
        if nb is None:
            return JSONResponse({"error": "no such notebook"}, status_code=404)
        try:
            asked = await request.json()
            cell, code, version = asked["cell"], asked["code"], asked["version"]
            if not (isinstance(cell, int) and isinstance(code, str) and isinstance(version, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "an edit is {cell, code, version}"}, status_code=400)
        try:
            changed = await asyncio.to_thread(edit_cell, nb, cell, code, version)
        except EditRefused as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        return JSONResponse({"saved": True, "changed": changed})


def _refused() -> Response:
    return PlainTextResponse(
        "tonic: this page needs the token that `tonic serve` printed when it started "
        "(the URL with ?token=...)\n",
        status_code=403,
    )


def _no_such() -> Response:
    return PlainTextResponse("tonic: no such notebook\n", status_code=404)


def make_app(notebooks: Sequence[LiveNotebook], token: str) -> Starlette:
    pages = Pages(notebooks, token)
    return Starlette(
        routes=[
            Route("/", pages.page),
            Route("/n/{number}", pages.page),
            Route("/n/{number}/events", pages.events),
            Route("/n/{number}/edit", pages.edit, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=HOSTS)],
    )


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp(nonce),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _index(notebooks: Sequence[LiveNotebook]) -> Response:
    items = Markup("").join(
        Markup('<li><a href="/n/{}">{}</a> · {}</li>').format(
            nb.number, nb.name, nb.body()["status"]
        )
        for nb in notebooks
    )
    html = Markup(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tonic</title>'
        "</head><body><h1>Notebooks</h1><ul>{}</ul></body></html>"
    ).format(items)
    return HTMLResponse(str(html), headers=_headers(secrets.token_urlsafe(8)))
