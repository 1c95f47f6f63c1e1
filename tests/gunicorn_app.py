"""The real app for gunicorn in the deployment tests, each response naming the process that
served it (``X-Served-By``), so a test can see one call's requests spread over workers.

Kept out of the service itself: production responses carry no such header.
"""

from __future__ import annotations

import os

from flask import Flask

from webhooks import create_app as create_service


def create_app() -> Flask:
    app = create_service()
    inner = app.wsgi_app

    def served_by(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Served-By", str(os.getpid()))],
                                  exc_info)

        return inner(environ, start)

    app.wsgi_app = served_by
    return app
