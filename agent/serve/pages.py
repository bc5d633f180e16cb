"""The web page: server-rendered HTML (Jinja2, every value escaped), a little vanilla JS and CSS
shipped in `static/` (nothing is fetched from elsewhere).

- `/`, `/sessions/NAME`: chat refinement over the sessions `zit chat --session NAME` continues;
- `/generate`: one idea through the rut-avoiding loop, with live progress;
- `/history`: the history store's images, their provenance, "render again";
- `/evals`: eval runs under ZIT_HOME, their report.html served as is;
- `/login`: for browsers, when the server has a token (sets a SameSite=Strict cookie).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from zit_agent.agent.serve import work
from zit_agent.agent.serve.api import zit
from zit_agent.agent.serve.app import PACKAGE, TOKEN_COOKIE, NotFound, same_token
from zit_agent.defaults import AGENT, LIMITS, RENDER, SERVE
from zit_agent.errors import UserError

router = APIRouter(include_in_schema=False)


@cache
def templates():
    import jinja2
    from fastapi.templating import Jinja2Templates

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True)
    return Jinja2Templates(env=env)


def render(request: Request, name: str, page: str, status_code: int = 200, **context):
    values = {
        "page": page, "status": zit(request).status, "max_text": SERVE.max_text,
        "max_count": LIMITS.max_count, "rut_count": AGENT.rut_count,
        "default_size": f"{RENDER.width}x{RENDER.height}", **context,
    }  # fmt: skip
    return templates().TemplateResponse(request, name, values, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def chat_page(request: Request) -> Response:
    return render(request, "chat.html", "chat", sessions=work.list_sessions(zit(request)))


@router.get("/sessions/{name}", response_class=HTMLResponse)
def session_page(name: str, request: Request) -> Response:
    state = zit(request)
    try:
        current = work.read_session(state, name)
    except (UserError, NotFound) as err:  # a bad name is no session either
        return render(request, "missing.html", "chat", 404, message=err.one_line())
    return render(request, "chat.html", "chat", sessions=work.list_sessions(state), current=current)


@router.get("/generate", response_class=HTMLResponse)
def generate_page(request: Request) -> Response:
    return render(request, "generate.html", "generate")


@router.get("/history", response_class=HTMLResponse)
def history_page(request: Request) -> Response:
    return render(request, "history.html", "history", images=work.recent_images(zit(request), 60))


@router.get("/evals", response_class=HTMLResponse)
def evals_page(request: Request) -> Response:
    return render(request, "evals.html", "evals", runs=work.eval_runs(zit(request)))


@router.get("/evals/{run_id}/report.html")
def eval_report(run_id: str, request: Request) -> FileResponse:
    return FileResponse(work.eval_report(zit(request), run_id), media_type="text/html")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return render(request, "login.html", "login")


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=1024)]) -> Response:
    expected = zit(request).token
    if not expected:
        return RedirectResponse("/", status_code=303)
    if not same_token(token, expected):
        return render(request, "login.html", "login", 401, failed=True)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response
