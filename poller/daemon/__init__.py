"""The long-running daemon: the scheduler that repeats the cycle, the HTTP listener (health,
metrics, webhooks), alerts and systemd notify. ``poller.compose.daemon`` builds its parts and
hands them over; nothing here imports the composition root. The worker cycle imports none of
it."""
