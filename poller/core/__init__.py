"""The core: states, routing and the decision of what to do next.

Nothing in here performs I/O or imports an HTTP or SQL library (an import-linter
contract in pyproject.toml enforces it). Adapters translate to and from these types.
"""
