"""The web console: pages for the people who decide on held redemptions, and the operator
actions as buttons (docs/console.md). The daemon and ``reward-poller console`` serve it from a
``data.Backend`` they build: it imports neither."""
