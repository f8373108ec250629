"""The core: routing, the next step and the decisions, on the domain's types.

Nothing in here performs I/O or imports an HTTP or SQL library, a source, a vendor or the
ledger (import-linter contracts in pyproject.toml enforce it).
"""
