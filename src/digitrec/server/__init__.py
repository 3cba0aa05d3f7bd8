"""``digitrec serve``: the draw-a-digit page and the REST API over one model (FastAPI on uvicorn)."""

from digitrec.server.app import create_app

__all__ = ["create_app"]
