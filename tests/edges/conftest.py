from tests.e2e.conftest import standins  # noqa: F401  (the fixture, shared with tests/e2e)
