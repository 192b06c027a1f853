"""WSGI entry point for an API-only node, e.g. ``gunicorn wsgi:app`` (no embedded workers)."""

from app.web import create_app

app = create_app()
