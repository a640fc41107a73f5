"""The console's door: no page without a session, no form post without its CSRF token.

A page asked for without a session redirects to the login form (and back after it); a
form posted without one is 401, with a session but without the session's CSRF token 403:
nothing behind the form runs. Every answer says not to cache it or frame it, and its
Content-Security-Policy lets only the console's own script and style run, so neither an
injected script nor an inline handler could act with the session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from ridgeline.deploy.console.sessions import COOKIE, Session, SessionStore

#: A console form is a few fields; anything bigger is refused before it is parsed.
FORM_BYTES_MAX = 64 * 1024
CSRF_FIELD = "csrf"
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """A page asked for without a live session: answered with a redirect to the login form."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Refused(Exception):
    """A form post refused before it ran: 401 (no session) or 403 (no or wrong CSRF token)."""

    def __init__(self, status: int, message: str) -> None:
        assert status in (401, 403, 413), status
        super().__init__(message)
        self.status = status


def page_session(request: Request) -> Session:
    """The session of a page request (FastAPI dependency); LoginRequired without one."""
    session = _store(request).find(request.cookies.get(COOKIE))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return session


async def read_form(request: Request) -> dict[str, list[str]]:
    """The urlencoded form of a post, bounded in size (no multipart: the console posts none)."""
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        raise Refused(413, f"a console form is at most {FORM_BYTES_MAX} bytes")
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


async def form_session(request: Request) -> tuple[Session, dict[str, list[str]]]:
    """The session and the form of a post (FastAPI dependency); Refused unless both the session and its CSRF token are there."""
    session = _store(request).find(request.cookies.get(COOKIE))
    if session is None:
        raise Refused(401, "not logged in: log in to the console first")
    form = await read_form(request)
    if not session.csrf_matches(first(form, CSRF_FIELD) or None):
        raise Refused(403, "the form carried no valid CSRF token: reload the page and send it again")
    return session, form


def first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()


def login_redirect(error: LoginRequired) -> Response:
    return RedirectResponse(f"/login?next={quote(error.path, safe='')}", status_code=303)


def refusal(error: Refused) -> Response:
    return PlainTextResponse(str(error), status_code=error.status)


async def secure_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this console only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/cluster"
    return target


def _store(request: Request) -> SessionStore:
    return request.app.state.sessions
