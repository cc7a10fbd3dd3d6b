"""Who may do what. Every reviewer has a personal token (only its SHA-256 is stored, in a users
file), a role and optionally an expiry:

- reviewer: the queue, clip pages, submit and skip;
- auditor: everything a reviewer may, plus approving or adjusting reviewed tasks;
- admin: everything, plus exports.

A browser logs in once with its token and gets an HttpOnly, SameSite=Strict session cookie
signed by the server; every write from the page also carries a CSRF token bound to that
session (double defence: the cookie never rides a cross-site request, and a forged request
cannot know the token). Scripts send ``Authorization: Bearer <token>`` instead and need no
CSRF token (a bearer header is never sent by a browser on its own). Nothing is anonymous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from .errors import Forbidden, Unauthorized

ROLES = ("reviewer", "auditor", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
SESSION_COOKIE = "cw_session"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class User:
    name: str
    role: str
    token_sha256: str
    expires_at: Optional[float] = None  # epoch seconds

    def may(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UsersFile:
    """``{"users": [{"name", "role", "token_sha256", "expires_at"?}]}``; problems name the file."""

    def __init__(self, users: list[User]):
        self.users = users
        self._by_hash = {u.token_sha256: u for u in users}

    @classmethod
    def load(cls, path: str | Path) -> "UsersFile":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            users = []
            for n, u in enumerate(raw["users"], start=1):
                if u["role"] not in ROLES:
                    raise ValueError(f"user {n} ({u.get('name')!r}): role must be one of {', '.join(ROLES)}")
                expires = u.get("expires_at")
                if isinstance(expires, str):
                    expires = datetime.fromisoformat(expires).timestamp()
                users.append(User(str(u["name"]), u["role"], str(u["token_sha256"]), expires))
        except FileNotFoundError:
            raise ValueError(f"{path}: no such users file (create one with `clipwatch review-user add`)") from None
        except (KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid users file ({exc})") from None
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: user names must be unique")
        return cls(users)

    @staticmethod
    def add(path: str | Path, name: str, role: str, days: Optional[float] = None) -> str:
        """Add (or replace) a user with a fresh token; returns the token (shown once)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        path = Path(path)
        raw = json.loads(path.read_text()) if path.exists() else {"users": []}
        token = secrets.token_urlsafe(24)
        entry = {"name": name, "role": role, "token_sha256": hash_token(token)}
        if days:
            entry["expires_at"] = time.time() + days * 86400
        raw["users"] = [u for u in raw["users"] if u["name"] != name] + [entry]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(raw, indent=2) + "\n")
        path.chmod(0o600)
        return token

    def by_token(self, token: str, now: float) -> User:
        user = self._by_hash.get(hash_token(token))
        if user is None:
            raise Unauthorized("unknown token")
        if user.expires_at is not None and user.expires_at <= now:
            raise Unauthorized(f"the token of {user.name} has expired")
        return user

    def by_name(self, name: str) -> Optional[User]:
        return next((u for u in self.users if u.name == name), None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed, stateless session cookies: ``base64(json).signature``."""

    def __init__(self, users: UsersFile, secret: Optional[bytes] = None):
        self.users = users
        self.secret = secret or secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, payload, hashlib.sha256).digest())

    def issue(self, user: User, now: float) -> tuple[str, str]:
        """A cookie value and the session's CSRF token."""
        expires = now + SESSION_SECONDS
        if user.expires_at is not None:
            expires = min(expires, user.expires_at)
        nonce = secrets.token_urlsafe(16)
        payload = json.dumps({"u": user.name, "exp": expires, "n": nonce}).encode()
        return f"{_b64(payload)}.{self._sign(payload)}", self.csrf_for(nonce)

    def csrf_for(self, nonce: str) -> str:
        return self._sign(b"csrf:" + nonce.encode())

    def read(self, cookie: str, now: float) -> tuple[User, str]:
        """The session's user and CSRF token; Unauthorized when forged, expired or revoked."""
        try:
            body, sig = cookie.split(".", 1)
            payload = _unb64(body)
            ok = hmac.compare_digest(sig, self._sign(payload))
            data = json.loads(payload) if ok else None
        except (ValueError, json.JSONDecodeError):
            data = None
        if not data:
            raise Unauthorized("invalid session; log in again")
        if data["exp"] <= now:
            raise Unauthorized("session expired; log in again")
        user = self.users.by_name(data["u"])
        if user is None:
            raise Unauthorized("this user no longer exists")
        if user.expires_at is not None and user.expires_at <= now:
            raise Unauthorized(f"the token of {user.name} has expired")
        return user, self.csrf_for(data["n"])


def require(user: User, role: str) -> None:
    if not user.may(role):
        raise Forbidden(f"{user.name} is a {user.role}; this needs the {role} role")
