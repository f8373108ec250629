"""reward-poller: fulfil Influitive reward redemptions through your own vendor, exactly once."""

import sys as _sys

__version__ = "0.1.0"


def _structlog_without_rich() -> None:
    """Import structlog as a production install has it. structlog's console renderer takes up
    ``rich`` (and with it ``pygments``) for its tracebacks whenever they are installed, as a
    development tool's dependency they often are; importing them costs a good part of a
    ``run --run-once`` start, and the worker's logs never need them. Hidden only while
    structlog is first imported: anything else may still import rich."""
    if "structlog" in _sys.modules or "rich" in _sys.modules:
        return
    _sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        # On demand, once, with rich hidden: see above.
        import structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]


_structlog_without_rich()
