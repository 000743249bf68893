"""The local demo web app: `create_app(model, limits, workdir, checkpoint, config)` (FastAPI) and its static page."""

from fnac.serve.app import ALLOWED_SUFFIXES, Limits, create_app, sanitize_filename

__all__ = ["ALLOWED_SUFFIXES", "Limits", "create_app", "sanitize_filename"]
