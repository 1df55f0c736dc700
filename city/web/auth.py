"""Accounts, passwords and sessions of the fleet page — the parts with no I/O in them.

Passwords: scrypt from the standard library (RFC 7914; hashlib.scrypt), each with its own
salt, stored as `scrypt$N$r$p$salt$hash` so that a later, costlier setting still verifies
the old hashes. Sessions: a random token in an HttpOnly, SameSite=Strict cookie; the
database keeps only its SHA-256 (a stolen backup opens no session), so any instance
behind a load balancer knows every session and a logout ends it everywhere. CSRF: every
POST carries a token the server compares in constant time — the session's own after
login, a double-submit cookie for the login form itself (login CSRF: no session yet).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from functools import cache

from reader.system.i18n import N_

# OWASP's floor for scrypt (2023): N=2^17, r=8, p=1 is 128 MiB per hash; 2^15 is 32 MiB and
# about 50 ms on the 2-core test machine, which still makes guessing offline expensive and
# a login flood cheap to absorb.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 256 * 1024 * 1024
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MUNI = re.compile(r"^[0-9]{6}$")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Account:
    """Who is logged in: one town (`muni`), or the prefecture (`muni` None: every town)."""

    name: str
    muni: str | None

    @property
    def prefecture(self) -> bool:
        return self.muni is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM, dklen=len(_unb64(digest)))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


# Compared against when the account does not exist, so that "no such account" and
# "wrong password" take the same time (no account names learnt from timing).
@cache
def dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What the sessions table keeps of a session token."""
    return hashlib.sha256(token.encode()).digest()


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def password_problem(password: str) -> str | None:
    """Why a new password is refused (marked for the catalog: `_()` at use), or None."""
    if len(password) < MIN_PASSWORD:
        return N_("a password has at least 10 characters")
    if password.strip() != password:
        return N_("a password neither starts nor ends with a space")
    return None


class LoginThrottle:
    """At most `limit` failed logins per account name in `window_s`; then the name is
    refused (429) until the oldest failure leaves the window. Keyed by the name, not the
    address: behind a reverse proxy every staff member has the proxy's. Per instance, in
    memory: N instances allow N times as many guesses, still far too few for a password
    of 10 characters, and each guess also costs the guesser a scrypt."""

    def __init__(self, limit: int = 10, window_s: float = 600.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(name, []) if now - t < self.window_s]
        if kept:
            self._failures[name] = kept
        else:
            self._failures.pop(name, None)
        return kept

    def blocked(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name, time.monotonic())) >= self.limit

    def failed(self, name: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._failures[name] = [*self._recent(name, now), now]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
