"""The worker: the cycle (``cycle``) and one module per step (``record``, ``order``,
``decide``, ``reconcile``), carrying out what ``poller.core.nextstep.next_step`` decides;
the operator commands (``operator``).

Works only through the Protocols in ``poller.ports``: it imports no HTTP or SQL library.
"""
