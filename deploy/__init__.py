"""Deployment checks: ``python -m deploy.celery_check`` (``make celery-check``)."""
