"""Entry point for Celery workers: ``celery -A parkgrid.worker worker`` (settings from env)."""

from .config import from_env
from .tasks import celery_app, configure

configure(from_env())
app = celery_app
