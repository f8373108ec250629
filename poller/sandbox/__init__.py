"""Local stand-ins for the third-party APIs, speaking their documented shapes.

Used by ``reward-poller demo`` and by the end-to-end tests. They are not mocks of our own
code: they are small servers on loopback with their own records (orders created, decisions
taken) that tests check the delivery guarantee against, and with knobs for the faults the
real services have (errors, rate limits, slow answers).
"""
