"""Background jobs: a persistent job table, huey as the queue, and an in-process runner."""
