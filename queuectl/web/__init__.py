"""The web face of queuectl: a dashboard, a JSON API and ``/metrics`` over one ``Queue``.

``create_app(queue, ...)`` builds the Starlette app; ``queuectl web`` serves it with
uvicorn in its own event loop. Like ``queuectl.cli``, nothing here decides a rule
of the queue: every read and every action is a ``Queue`` call.
"""

from queuectl.web.app import create_app

__all__ = ["create_app"]
