"""The shared retry loop is built once per policy and may run calls from many threads at
once: each call keeps its own attempts."""

from __future__ import annotations

import threading
from collections import Counter

import httpx

from poller.transport import RetryPolicy, _retrying, send

POLICY = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)


def _no_sleep(_seconds: float) -> None:
    return None


def test_one_policy_and_sleep_share_one_retry_loop() -> None:
    assert _retrying(POLICY, _no_sleep) is _retrying(POLICY, _no_sleep)
    other = RetryPolicy(attempts=2)
    assert _retrying(other, _no_sleep) is not _retrying(POLICY, _no_sleep)


def test_a_sleep_that_cannot_be_a_key_still_gets_a_retry_loop() -> None:
    class Recorder(list[float]):
        def __call__(self, seconds: float) -> None:
            self.append(seconds)

    sleeps = Recorder()  # a list: unhashable
    calls = Counter[str]()

    def answer(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] += 1
        return httpx.Response(503 if calls[request.url.path] < 3 else 200)

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as client:
        response = send(client, "GET", "/a", policy=POLICY, sleep=sleeps)
    assert response.status_code == 200 and calls["/a"] == 3 and len(sleeps) == 2


def test_calls_in_several_threads_each_keep_their_own_attempts() -> None:
    calls = Counter[str]()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def answer(request: httpx.Request) -> httpx.Response:
        with lock:
            calls[request.url.path] += 1
            n = calls[request.url.path]
        # Every path fails twice, then answers: three attempts each, never more or fewer.
        return httpx.Response(503 if n < 3 else 200)

    results: dict[str, int] = {}

    def call(path: str) -> None:
        start.wait()
        with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://x") as c:
            results[path] = send(c, "GET", path, policy=POLICY, sleep=_no_sleep).status_code

    threads = [threading.Thread(target=call, args=(f"/p{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {f"/p{n}": 200 for n in range(8)}
    assert calls == {f"/p{n}": 3 for n in range(8)}
