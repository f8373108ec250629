"""reward-poller: fulfil Influitive reward redemptions through your own vendor, exactly once."""

__version__ = "0.1.0"
