"""Periodic jobs (outbox drain, reconciliation, SLA escalation) and their beat schedule."""
