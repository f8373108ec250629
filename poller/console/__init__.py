"""The web console: pages for the people who decide what happens to held redemptions, and
the operator actions as buttons (docs/console.md). The daemon's listener mounts it under
``/console`` and ``reward-poller console`` serves it alone; it imports neither: they hand it
a ``data.Backend``."""
