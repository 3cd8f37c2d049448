"""Operating metawsm: the metrics catalogue (and, on the exporter's branch, the exporter)."""
