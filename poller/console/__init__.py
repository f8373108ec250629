"""The web console: pages for the people who decide what happens to held redemptions, and
the operator actions (retry, reorder, refuse, mark fulfilled) as buttons (docs/console.md).

``poller.console.app.create_app`` builds it from a ``Backend`` (the ledger, the vendors, the
worker's ``process``): the daemon's listener mounts it under ``/console``, and
``reward-poller console`` serves it alone. It imports neither the daemon nor the
composition root: they hand it what it needs.
"""
