"""The API's routers, one module per area: forum, runs and control, the event log, operations."""
