"""The worker: the cycle, its steps, and the operator commands. It works only through the
Protocols in ``poller.ports``: it imports no HTTP or SQL library."""
