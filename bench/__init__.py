"""reward-poller's benchmark suite: ``make bench`` (``python -m bench``).

Runs the six measurements against the local stand-ins, on SQLite and PostgreSQL where both
matter, prints a table and writes BENCHMARKS.md. Each module says
what it measures and how; ``figures.py`` holds the measurements themselves.
"""
