"""The worker cycle (poll, record, order, decide) and the scheduler that repeats it.

Works only through the Protocols in ``poller.ports``: it imports no HTTP or SQL library.
"""
