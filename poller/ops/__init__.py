"""Running reward-poller in production: systemd notify, metrics, alerts, the daemon's wiring.

Nothing here is imported by the worker cycle except ``notify`` (standard library only)."""
