"""Who may use the console: password hashes (scrypt), CSRF tokens and the limit on wrong
passwords. Nothing here logs or returns a password or a hash; a failed log-in says only that
the name or the password was wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal

from poller.config.sections import ConsoleUserSettings

Role = Literal["viewer", "operator"]

_MAXMEM = 128 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# scrypt's work factors: n=2**15, r=8, p=1 takes ~32 MiB and a few tenths of a second: slow
# for someone guessing, fast enough for one person logging in.
def hash_password(password: str, *, n: int = 2**15, r: int = 8, p: int = 1) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64url), for ``[[console.users]] password_hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM,
                            dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed hash, never raises."""
    try:
        n, r, p, salt, digest = stored.removeprefix("scrypt$").split("$")
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password("not a password of anyone's", n=2**14)


class Users:
    """The people in ``[[console.users]]``, found by name (case-insensitive)."""

    def __init__(self, users: Iterable[ConsoleUserSettings]) -> None:
        self._by_name = {u.name.casefold(): u for u in users}

    def get(self, name: str) -> ConsoleUserSettings | None:
        return self._by_name.get(" ".join(name.split()).casefold())

    def authenticate(self, name: str, password: str) -> ConsoleUserSettings | None:
        """The user when the password is theirs. An unknown name costs the same scrypt as a
        known one, so the time taken does not tell which names exist."""
        user = self.get(name)
        ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
        return user if ok else None


def toml_entry(name: str, role: Role, password_hash: str) -> str:
    """The ``[[console.users]]`` entry for ``add-user`` to print or append."""
    return (f"[[console.users]]\nname = {json.dumps(name, ensure_ascii=False)}\n"
            f"role = {json.dumps(role)}\npassword_hash = {json.dumps(password_hash)}\n")


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


class LoginLimiter:
    """Wrong passwords per client: each one is answered more slowly (1 s, 2 s, 4 s, at most
    8 s), and after ``max_failures`` within ``window`` seconds the client is refused without
    a check until the oldest of them is ``window`` old."""

    def __init__(self, *, max_failures: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}  # each client's last max_failures

    def blocked_for(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            times = self._failures.get(client, deque())
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[0] + self.window - self._clock())

    def failed(self, client: str) -> float:
        """Count a wrong password; returns how long to wait before answering it."""
        with self._lock:
            now = self._clock()
            times = self._failures.setdefault(client, deque(maxlen=self.max_failures))
            times.append(now)
            if len(self._failures) > 10_000:  # many clients: forget the oldest
                oldest = min(self._failures, key=lambda c: self._failures[c][-1])
                del self._failures[oldest]
            return min(2.0 ** (sum(now - t < self.window for t in times) - 1), 8.0)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
