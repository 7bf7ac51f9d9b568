"""API tokens for ``carbonsched server``: a team, a scope, and a secret kept only as its digest.

A token reads ``cst_<id>_<secret>``: ``id`` (12 hex) finds the row, ``secret`` (43 URL-safe
characters, 256 random bits) is checked against the stored SHA-256 digest with a constant-time
comparison. A random 256-bit secret needs no slow password hash: there is nothing to guess. The
whole token is shown once, by ``carbonsched token create``; the store never has it.

Scopes grow: ``read`` (jobs, logs, reports, regions, forecasts, ledger) < ``plan`` (+ plans) <
``submit`` (+ submit and cancel jobs) < ``admin`` (+ list and revoke the team's tokens). Every
job belongs to one team and a token only ever sees its own team's jobs.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonsched.errors import UserInputError
from carbonsched.run.store import Store
from carbonsched.units import iso_utc

SCOPES = ("read", "plan", "submit", "admin")
TEAM_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_TOKEN_RE = re.compile(r"^cst_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
LAST_USED_EVERY = timedelta(minutes=1)  # how often a token's last use is written (not on every request)


@dataclass(frozen=True)
class Token:
    id: str
    team: str
    scope: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    def allows(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)

    def to_dict(self) -> dict:
        return {"id": self.id, "team": self.team, "scope": self.scope, "name": self.name, "created_at": self.created_at,
                "last_used_at": self.last_used_at, "revoked_at": self.revoked_at}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row) -> Token:
    return Token(id=row["id"], team=row["team"], scope=row["scope"], name=row["name"], created_at=row["created_at"],
                 last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])


def check_team(team: str) -> str:
    if not isinstance(team, str) or not TEAM_RE.match(team):
        raise UserInputError(f"team {team!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit (e.g. ml-research)")
    return team


def create_token(store: Store, *, team: str, scope: str, name: str, now: datetime) -> tuple[str, Token]:
    """A new token: (the full token text, to show once; its stored record)."""
    check_team(team)
    if scope not in SCOPES:
        raise UserInputError(f"scope {scope!r}: choose one of {', '.join(SCOPES)}")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with store.backend.tx():
        store.backend.execute("INSERT INTO tokens (id, team, scope, name, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                              (token_id, team, scope, name or "", _digest(secret), iso_utc(now)))
    return f"cst_{token_id}_{secret}", get_token(store, token_id)


def get_token(store: Store, token_id: str) -> Token:
    rows = store.backend.read("SELECT * FROM tokens WHERE id = ?", (token_id,))
    if not rows:
        raise UserInputError(f"no token {token_id!r}; list them with `carbonsched token list`")
    return _token(rows[0])


def list_tokens(store: Store, team: str | None = None) -> list[Token]:
    if team is None:
        return [_token(r) for r in store.backend.read("SELECT * FROM tokens ORDER BY team, created_at, id")]
    return [_token(r) for r in store.backend.read("SELECT * FROM tokens WHERE team = ? ORDER BY created_at, id", (team,))]


def revoke_token(store: Store, token_id: str, now: datetime, team: str | None = None) -> Token:
    """Revoke (idempotent). With ``team``, another team's token reads as unknown."""
    token = get_token(store, token_id)
    if team is not None and token.team != team:
        raise UserInputError(f"no token {token_id!r}; list them with `carbonsched token list`")
    with store.backend.tx():
        store.backend.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (iso_utc(now), token_id))
    return get_token(store, token_id)


def verify_token(store: Store, text: str, now: datetime) -> Token | None:
    """The live token ``text`` is, or None (malformed, unknown, wrong secret, revoked)."""
    m = _TOKEN_RE.match(text or "")
    if not m:
        return None
    rows = store.backend.read("SELECT * FROM tokens WHERE id = ?", (m.group(1),))
    if not rows or rows[0]["revoked_at"] or not hmac.compare_digest(rows[0]["secret_sha256"], _digest(m.group(2))):
        return None
    token = _token(rows[0])
    stale = iso_utc(now - LAST_USED_EVERY)
    if token.last_used_at is None or token.last_used_at < stale:
        with store.backend.tx():
            store.backend.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (iso_utc(now), token.id))
    return token
