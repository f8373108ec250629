"""reward-poller: fulfil Influitive reward redemptions through your own vendor, exactly once."""

import sys as _sys

__version__ = "0.1.0"

# structlog's console renderer takes up ``rich`` (and ``pygments``) for its tracebacks when
# they are installed, as a development tool's dependency they often are: importing them costs
# a good part of a ``run --run-once`` start, and the logs never need them. Hidden only while
# structlog is first imported.
if "structlog" not in _sys.modules and "rich" not in _sys.modules:
    _sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog as _structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]
