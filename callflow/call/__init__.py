"""A caller's call through its flow: the engine that answers every voice webhook, and the
degraded path that needs nothing but the flows in memory."""
