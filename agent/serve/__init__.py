"""`zit serve`: the web page and the HTTP API, a thin caller of the run API.

    from zit_agent.agent.serve import create_app
    app = create_app(settings, options)        # parts load once, at start; uvicorn runs it

- `app`: the app factory and shared state (the runner, the sessions database, the job queue);
  the token, Host and body-size guards;
- `jobs`: the one bounded job queue (429 when full, cancelled when the client goes away);
- `api`: OpenAI-compatible `/v1/images/generations` and `/v1/models`, zit's JSON API;
- `pages`: the HTML page (templates/ and static/ ship as package data);
- `work`: what each route asks of the run API; `models`, `views`: requests and responses.
"""

from __future__ import annotations

from zit_agent.agent.serve.app import create_app

__all__ = ["create_app"]
