"""Services: submitting commands, handling them, relaying the outbox, projecting events."""
