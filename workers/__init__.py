"""Celery workers that drain queued readings into PostgreSQL."""
