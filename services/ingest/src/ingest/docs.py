"""`/docs` (Swagger UI) and `/redoc` served from local assets, for sites with no internet.

FastAPI's own pages load their scripts from a CDN and render blank offline.
`fastapi-offline` (chosen over `swagger-ui-bundle`, which ships Swagger UI only and would
leave ReDoc to a hand-vendored asset) serves the same pages from files in its package,
with Google Fonts off. Two things would still reach out: Swagger UI's validator badge
(turned off here) and ReDoc's sidebar logo, which ReDoc always loads from
`cdn.redoc.ly`. A Content-Security-Policy on the two pages keeps the browser on this
origin, so nothing is fetched from elsewhere (the logo simply does not show).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOC_PAGES: Final = frozenset({"/docs", "/redoc"})

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; "
    # The pages bootstrap with an inline script; ReDoc styles inline and searches in a
    # worker it starts from a blob.
    "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


class DocsPolicy:
    """Adds the policy to the docs pages' answers; every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOC_PAGES:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", [])]
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)


def offline_docs_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose `/docs` and `/redoc` need nothing but this server."""
    app = FastAPIOffline(swagger_ui_parameters={"validatorUrl": None}, **kwargs)
    app.add_middleware(DocsPolicy)
    return app
