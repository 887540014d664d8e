"""The web catalog: pages for people, rendered on the server from the same catalog and audit
data the API answers from, under ``/ui/``; every page has a JSON twin (``?format=json``).

:mod:`.render` turns a view's data into a page, :mod:`.views` holds the pages, :mod:`.auth` the
login, :mod:`.session` cookies and CSRF, :mod:`.index` the in-memory catalog index behind
search and facets, :mod:`.card`, :mod:`.lineage` and :mod:`.charts` what a page draws.
"""

from __future__ import annotations

from aiohttp import web

from ..hfapi import CONTEXT
from . import auth, session, views
from .index import Indexer
from .render import INDEXER, PREFIX, ROUTES, owns, page, root, security_headers, static

__all__ = ["owns", "setup"]


def setup(app: web.Application) -> None:
    """Register the pages and their static files on the daemon's app."""
    app[INDEXER] = Indexer(app[CONTEXT])
    app[session.SESSIONS] = session.Sessions()
    app.on_response_prepare.append(security_headers)
    routes = [
        app.router.add_get("/", root),
        app.router.add_get(PREFIX, page(views.catalog)),
        app.router.add_get(PREFIX + "models/{org}/{name}", page(views.model)),
        app.router.add_get(PREFIX + "audit", page(views.dashboard)),
        app.router.add_get(PREFIX + "audit/report.{fmt}", page(views.report_download)),
        app.router.add_get(PREFIX + "ops", page(views.operations)),
        app.router.add_post(PREFIX + "ops/mirror", page(views.queue_mirror)),
        app.router.add_post(PREFIX + "ops/watch", page(views.watch_repo)),
        app.router.add_get(PREFIX + "login", page(auth.login_form, public=True)),
        app.router.add_post(PREFIX + "login", page(auth.login, public=True)),
        app.router.add_post(PREFIX + "logout", page(auth.logout, public=True)),
        app.router.add_get(PREFIX + "static/{digest}/{name}", static),
    ]
    app[ROUTES] = {route.resource for route in routes}
