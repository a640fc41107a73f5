"""The console's ASGI app: login and logout here, the pages in :mod:`.pages`.

Server-rendered Jinja2 templates, one stylesheet and one small script from ``static/``;
no front-end build. Every page needs a session (:mod:`.guard`), every form its CSRF token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ridgeline.deploy.console import guard, inflight, pages
from ridgeline.deploy.console.backend import ConsoleBackends
from ridgeline.deploy.console.sessions import COOKIE, LOGIN_COOKIE, SESSION_TTL_SECONDS, LoginRefused, Session, SessionStore, login_csrf_matches, new_login_csrf
from ridgeline.deploy.console.views import TEMPLATES

_HERE = Path(__file__).parent


def create_app(backends: ConsoleBackends, sessions: SessionStore, *, secure: bool = True) -> FastAPI:
    """The app over ``backends`` (owned by the caller); ``secure`` False drops the cookies' Secure flag (an --insecure console on plain HTTP)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backends, app.state.sessions, app.state.secure = backends, sessions, secure
    app.middleware("http")(guard.secure_headers)
    app.add_exception_handler(guard.LoginRequired, lambda _request, error: guard.login_redirect(error))  # type: ignore[arg-type]
    app.add_exception_handler(guard.Refused, lambda _request, error: guard.refusal(error))  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.get("/login")
    def login_form(request: Request, next: str = "") -> Response:  # noqa: A002 - the query parameter's name
        return _login_page(request, next, error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await guard.read_form(request)
        target = guard.safe_next(guard.first(form, "next"))
        if not login_csrf_matches(request.cookies.get(LOGIN_COOKIE), guard.first(form, guard.CSRF_FIELD) or None):
            raise guard.Refused(403, "the login form carried no valid CSRF token: reload the login page")
        try:
            session = sessions.login(guard.first(form, "token"))
        except LoginRefused as error:
            return _login_page(request, target, error=str(error), status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, session.session_id, max_age=SESSION_TTL_SECONDS, httponly=True, secure=secure, samesite="strict", path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(posted: tuple[Session, dict[str, list[str]]] = Depends(guard.form_session)) -> Response:
        sessions.logout(posted[0].session_id)
        backends.end(posted[0].session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/")
    def home(_session: Session = Depends(guard.page_session)) -> Response:
        return RedirectResponse("/cluster", status_code=303)

    app.include_router(pages.router)
    app.include_router(inflight.router)
    return app


def _login_page(request: Request, target: str, *, error: str | None, status_code: int = 200) -> Response:
    csrf = new_login_csrf()
    response = TEMPLATES.TemplateResponse(request, "login.html", {"csrf": csrf, "next": guard.safe_next(target), "error": error}, status_code=status_code)
    response.set_cookie(LOGIN_COOKIE, csrf, max_age=900, httponly=True, secure=request.app.state.secure, samesite="strict", path="/login")
    return response
