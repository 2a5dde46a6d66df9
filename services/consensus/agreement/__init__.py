"""Inter-annotator agreement metrics (pure functions; the service wires them to data and routes)."""
