"""Who may use the console: password hashes (scrypt), roles, signed session cookies, CSRF
tokens and the limit on wrong passwords.

Nothing here logs or returns a password or a hash; a failed log-in says only that the name
or the password was wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")

# scrypt's work factors: n=2**15, r=8, p=1 takes ~32 MiB and a few tenths of a second: slow
# for someone guessing, fast enough for one person logging in.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 128 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64url), for ``[[console.users]] password_hash``."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM,
                            dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed hash, never raises."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password("not a password of anyone's", n=2**14)


@dataclass(frozen=True, kw_only=True)
class User:
    name: str
    role: Role
    password_hash: str

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


class Users:
    """The people in ``[[console.users]]``, found by name (case-insensitive)."""

    def __init__(self, users: Iterable[User]) -> None:
        self._by_name = {u.name.casefold(): u for u in users}

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> User | None:
        return self._by_name.get(" ".join(name.split()).casefold())

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is theirs. An unknown name costs the same scrypt as a
        known one, so the time taken does not tell which names exist."""
        user = self.get(name)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return user if verify_password(password, user.password_hash) else None


def toml_entry(name: str, role: Role, password_hash: str) -> str:
    """The ``[[console.users]]`` entry for ``add-user`` to print or append."""
    return (f"[[console.users]]\nname = {json.dumps(name, ensure_ascii=False)}\n"
            f"role = {json.dumps(role)}\npassword_hash = {json.dumps(password_hash)}\n")


# --- sessions -----------------------------------------------------------------------------

COOKIE = "reward_poller_console"


class Sessions:
    """A session is a signed (not encrypted) cookie holding the user's name and a CSRF
    token; it holds nothing secret. It expires ``max_age`` seconds after it was issued."""

    def __init__(self, secret: str, *, max_age: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="reward-poller console")
        self.max_age = max_age

    def load(self, cookie: str | None) -> dict[str, Any]:
        if not cookie:
            return {}
        try:
            data = self._serializer.loads(cookie, max_age=int(self.max_age))
        except BadSignature:  # tampered, expired or from another secret
            return {}
        return data if isinstance(data, dict) else {}

    def dump(self, data: Mapping[str, Any]) -> str:
        return self._serializer.dumps(dict(data))


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# --- wrong passwords ----------------------------------------------------------------------


class LoginLimiter:
    """Wrong passwords per client: each one is answered more slowly (``delay``: 1 s, 2 s, 4 s,
    at most 8 s), and after ``max_failures`` within ``window`` seconds the client is
    refused without a check until the oldest of them is ``window`` old."""

    def __init__(self, *, max_failures: int, window: float, base_delay: float = 1.0,
                 max_delay: float = 8.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def _recent(self, client: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(client, []) if now - t < self.window]
        if kept:
            self._failures[client] = kept
        else:
            self._failures.pop(client, None)
        return kept

    def blocked_for(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            recent = self._recent(client, now)
            if len(recent) < self.max_failures:
                return 0.0
            return max(0.0, recent[-self.max_failures] + self.window - now)

    def failed(self, client: str) -> float:
        """Count a wrong password; returns how long to wait before answering it."""
        with self._lock:
            now = self._clock()
            recent = self._recent(client, now)
            recent.append(now)
            self._failures[client] = recent
            if len(self._failures) > 10_000:  # many clients: forget the oldest
                oldest = min(self._failures, key=lambda c: self._failures[c][-1])
                del self._failures[oldest]
            return float(min(self.base_delay * 2.0 ** (len(recent) - 1), self.max_delay))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
