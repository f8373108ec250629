"""The long-running daemon: the scheduler that repeats the cycle, the HTTP listener (health,
metrics, webhooks), alerts and systemd notify. The worker cycle imports none of it."""
