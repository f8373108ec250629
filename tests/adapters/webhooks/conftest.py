from tests.system.cli.conftest import standins  # noqa: F401  (the fixture, shared with tests/e2e)
