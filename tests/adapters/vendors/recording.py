"""vcrpy recording for the generic HTTP vendor's cassettes (``cassettes/http/``).

That vendor's receiver is the user's own service, whose contract this project defines, so
its cassettes are recorded against the project's receiver stand-in, served with a
recording-only secret, and replay with record mode "none" (no network in CI). The other
vendors' cassettes are composed from their documentation instead (``doc_cassettes.py``).
Record them again with::

    REWARD_POLLER_VCR_RECORD=all .venv/bin/pytest tests/adapters/vendors/test_http_cassettes.py

While recording, request URLs are rewritten to a fixed replay origin, the auth and
signature headers are filtered out, and response bodies go through the vendor's scrubber
(reward links and claim codes replaced), so the files hold no secret; each cassette test
module has a test that reads every file to prove it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vcr

RECORD_MODE = os.environ.get("REWARD_POLLER_VCR_RECORD", "none")
RECORDING = RECORD_MODE != "none"
REDACTED = "REDACTED"
CASSETTES = Path(__file__).parent / "cassettes"


def _scrub_response(scrub: Callable[[Any], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def before_record(response: dict[str, Any]) -> dict[str, Any]:
        body = response["body"]["string"]
        try:
            data = json.loads(body)
        except ValueError:
            return response
        cleaned = json.dumps(scrub(data)).encode()
        response["body"]["string"] = cleaned
        for name in response["headers"]:
            if name.lower() == "content-length":
                response["headers"][name] = [str(len(cleaned))]
        return response

    return before_record


@dataclass
class Tape:
    vcr: vcr.VCR
    origin: str
    """Where the adapter points: the live stand-in while recording, the replay origin after."""
    state: Any | None
    """The live stand-in's state while recording; None on replay."""
    sleeps: list[float] = field(default_factory=list)

    def arrange(self, setup: Callable[[Any], object]) -> None:
        """Set the stand-in up; nothing to do on replay (the answers are on tape)."""
        if self.state is not None:
            setup(self.state)


def tape(vendor: str, replay_origin: str, live: tuple[str, Any] | None, *,
         scrub: Callable[[Any], Any] = lambda data: data,
         filter_headers: tuple[str, ...] = ("authorization", "host")) -> Tape:
    live_origin = live[0] if live else replay_origin
    state = live[1] if live else None
    if state is not None:
        state.reset()

    def to_replay_origin(request: Any) -> Any:
        request.uri = request.uri.replace(live_origin, replay_origin, 1)
        return request

    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES / vendor),
        record_mode=RECORD_MODE,
        filter_headers=list(filter_headers),
        before_record_request=to_replay_origin,
        before_record_response=_scrub_response(scrub),
        decode_compressed_response=True,
    )
    return Tape(vcr=recorder, origin=live_origin, state=state)


def start_recording(vendor: str) -> None:
    """Remove the vendor's cassettes before recording them all again (record mode "all"
    would otherwise keep the old interactions in each cassette it loads)."""
    for path in (CASSETTES / vendor).glob("*.yaml"):
        path.unlink()


def cassette_texts(vendor: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in (CASSETTES / vendor).glob("*.yaml")}
