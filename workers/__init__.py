"""Celery app and thin task adapters over metawsm's services."""
