"""API tokens: created, listed and revoked over the database, verified on every request.

A token reads ``prov_<id>_<secret>``: the id (random, 64 bits) finds the row, the secret
(random, 256 bits) proves possession. Only an HMAC-SHA256 of the secret, keyed with a random
salt of the row's own, is stored, and it is compared in constant time. A slow password hash
would add nothing: the secret is random, not chosen by a person, and cannot be guessed from
its hash; it would only cost CPU on every request.

The CLI (``provisioner token ...``) is a thin call of ``create_token``, ``list_tokens`` and
``revoke_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from provisioner.auth.scopes import Principal, PrincipalKind, scope_problem
from provisioner.domain.descriptor import identifier_problem
from provisioner.errors import (
    AuthenticationError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidRequestError,
    NotFoundError,
    Problem,
)
from provisioner.store.database import Database
from provisioner.store.models import PRINCIPAL, api_tokens
from provisioner.store.records import field_names, record, values

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "prov_"
_TOKEN_TEXT = re.compile(r"prov_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
MAX_EXPIRY_DAYS = 3650
# A verified token is remembered this long per replica: a revoked token stops working within
# it on every replica, and a busy client costs one database read per interval, not per request.
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 1024
# last_used_at is written at most this often per token and replica.
LAST_USED_EVERY = timedelta(seconds=60)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is shown of a token: never its secret, nor its hash."""

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: ``secret`` is shown once, then only its hash exists."""

    secret: str
    info: TokenInfo


def _digest(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).hexdigest()


def _info(row: Row[Any]) -> TokenInfo:
    return record(TokenInfo, row)


def _creation_problems(
    name: str, scopes: Sequence[str], expires_in_days: int | None
) -> list[Problem]:
    problems: list[Problem] = []
    name_problem = identifier_problem(name)
    if name_problem is not None:
        problems.append(Problem("name", name_problem))
    elif len(name) > PRINCIPAL:
        problems.append(Problem("name", f"must be at most {PRINCIPAL} characters"))
    if not scopes:
        problems.append(Problem("scope", "give at least one scope"))
    problems.extend(
        Problem("scope", problem)
        for problem in (scope_problem(scope) for scope in scopes)
        if problem is not None
    )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        problems.append(Problem("expiresIn", f"must be 1 to {MAX_EXPIRY_DAYS} days"))
    return problems


async def create_token(
    database: Database,
    name: str,
    scopes: Sequence[str],
    *,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> NewToken:
    """Create a token named ``name`` with ``scopes``; its secret is in the answer only.

    ``InvalidRequestError`` for a bad name, scope or expiry; ``ConflictError`` if an active
    token already has this name."""
    problems = _creation_problems(name, scopes, expires_in_days)
    if problems:
        raise InvalidRequestError("the token cannot be created", problems)
    now = now or utc_now()
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    info = TokenInfo(
        name=name,
        scopes=tuple(dict.fromkeys(scopes)),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        last_used_at=None,
        revoked_at=None,
    )
    row = values(info, field_names(TokenInfo)) | {
        "id": token_id,
        "salt": salt.hex(),
        "secret_hash": _digest(salt, secret),
    }

    def write(conn: Connection) -> None:
        active = select(api_tokens.c.id).where(
            api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
        )
        if conn.execute(active).first() is not None:
            raise ConflictError(f"a token named {name!r} exists: revoke it first")
        conn.execute(insert(api_tokens).values(**row))

    try:
        await database.transaction(write)
    except IntegrityError:  # created at the same instant elsewhere
        raise ConflictError(f"a token named {name!r} exists: revoke it first") from None
    log.info("token_created", name=name, scopes=list(info.scopes))
    return NewToken(secret=f"{TOKEN_PREFIX}{token_id}_{secret}", info=info)


async def list_tokens(database: Database, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Every token, oldest first (revoked ones only if asked for)."""
    query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.name)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    async with database.read() as conn:
        return [_info(row) for row in (await conn.execute(query)).all()]


async def revoke_token(database: Database, name: str, *, now: datetime | None = None) -> TokenInfo:
    """Revoke the active token named ``name`` (``NotFoundError`` if there is none). The row is
    kept, so that the record of who did what keeps its meaning."""
    now = now or utc_now()

    def write(conn: Connection) -> Row[Any] | None:
        return conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(*api_tokens.c)
        ).first()

    row = await database.transaction(write)
    if row is None:
        raise NotFoundError(f"no active token is named {name!r}")
    log.info("token_revoked", name=name)
    return _info(row)


@dataclass(frozen=True, slots=True)
class _Known:
    """A token row as last read, and when (monotonic)."""

    token_id: str
    info: TokenInfo
    salt: bytes
    secret_hash: str
    read_at: float


class TokenVerifier:
    """Turns a token's text into its principal, or refuses it (``AuthenticationError``)."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._clock = clock
        self._monotonic = monotonic
        self._known: dict[str, _Known] = {}

    @staticmethod
    def recognises(text: str) -> bool:
        """Whether ``text`` is shaped like one of our tokens (rather than a JWT)."""
        return text.startswith(TOKEN_PREFIX)

    async def verify(self, text: str) -> Principal:
        match = _TOKEN_TEXT.fullmatch(text)
        if match is None:
            raise AuthenticationError("the token is malformed")
        token_id, secret = match.groups()
        known = await self._lookup(token_id)
        # Compared whatever was found, so that an unknown id costs what a wrong secret does.
        digest = _digest(known.salt if known else b"", secret)
        if known is None or not hmac.compare_digest(digest, known.secret_hash):
            raise AuthenticationError("unknown or revoked token")
        now = self._clock()
        status = known.info.status(now)
        if status != "active":
            raise AuthenticationError(f"the token is {status}")
        await self._touch(known, now)
        return Principal(known.info.name, frozenset(known.info.scopes), PrincipalKind.TOKEN)

    async def _lookup(self, token_id: str) -> _Known | None:
        known = self._known.get(token_id)
        if known is not None and self._monotonic() - known.read_at < CACHE_SECONDS:
            return known
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(api_tokens).where(api_tokens.c.id == token_id))
            ).first()
        if row is None or row.revoked_at is not None:
            self._known.pop(token_id, None)
            return None
        known = _Known(
            token_id, _info(row), bytes.fromhex(row.salt), row.secret_hash, self._monotonic()
        )
        self._remember(known)
        return known

    def _remember(self, known: _Known) -> None:
        self._known.pop(known.token_id, None)
        if len(self._known) >= CACHE_ENTRIES:
            del self._known[next(iter(self._known))]  # the oldest read
        self._known[known.token_id] = known

    async def _touch(self, known: _Known, now: datetime) -> None:
        """Record the use, at most once a minute per token and replica."""
        last = known.info.last_used_at
        if last is not None and now - last < LAST_USED_EVERY:
            return
        due = now - LAST_USED_EVERY
        statement = (
            update(api_tokens)
            .where(
                api_tokens.c.id == known.token_id,
                or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at < due),
            )
            .values(last_used_at=now)
        )
        try:
            await self._db.transaction(lambda conn: conn.execute(statement))
        except DatabaseUnavailableError as exc:
            log.warning("token_use_not_recorded", name=known.info.name, error=str(exc))
            return
        self._remember(replace(known, info=replace(known.info, last_used_at=now)))
