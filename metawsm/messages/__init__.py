"""Message contracts: commands, events and control payloads.

These modules are pure data: they import nothing from celery, redis, sqlalchemy or click.
"""
