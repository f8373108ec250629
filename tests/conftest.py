"""Settings shared by every test."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Property tests judge correctness, not speed: on a loaded 2-core CI machine input generation
# can be slow, and a timing health check would fail a correct run.
settings.register_profile(
    "reward-poller",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("reward-poller")
