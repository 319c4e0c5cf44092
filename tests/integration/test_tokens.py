"""API tokens in the database, on SQLite and PostgreSQL: only a hash is stored, names are
unique among active tokens, and verification refuses what is unknown, revoked or expired."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from provisioner.auth.scopes import PrincipalKind
from provisioner.auth.tokens import (
    TokenVerifier,
    create_token,
    list_tokens,
    revoke_token,
)
from provisioner.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.models import api_tokens

TOKEN = re.compile(r"prov_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


async def test_a_token_is_shown_once_and_stored_as_a_salted_hash(database: Database) -> None:
    created = await create_token(database, "ci", ["deploy:dev", "read"])
    assert TOKEN.fullmatch(created.secret)
    # prov_<hex id>_<secret>: the secret itself may contain "_" (URL-safe base64).
    secret = created.secret.split("_", 2)[2]
    async with database.read() as conn:
        rows = [dict(row._mapping) for row in (await conn.execute(select(api_tokens))).all()]
    assert len(rows) == 1
    assert all(secret not in str(value) for value in rows[0].values())
    assert len(rows[0]["secret_hash"]) == 64
    other = await create_token(database, "other", ["read"])
    async with database.read() as conn:
        salts = (await conn.execute(select(api_tokens.c.salt))).scalars().all()
    assert len(set(salts)) == 2  # a salt per token
    assert other.secret != created.secret


async def test_the_secret_proves_the_principal(database: Database) -> None:
    created = await create_token(database, "ci", ["deploy:dev"])
    principal = await TokenVerifier(database).verify(created.secret)
    assert principal.name == "ci"
    assert principal.scopes == {"deploy:dev"}
    assert principal.kind is PrincipalKind.TOKEN


async def test_a_wrong_secret_or_unknown_id_is_refused(database: Database) -> None:
    created = await create_token(database, "ci", ["read"])
    verifier = TokenVerifier(database)
    wrong_secret = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    unknown_id = "prov_" + "0" * 16 + "_" + created.secret.rsplit("_", 1)[1]
    for text in (wrong_secret, unknown_id, "prov_short", created.secret + "x"):
        with pytest.raises(AuthenticationError):
            await verifier.verify(text)


async def test_a_revoked_token_is_refused_and_its_name_can_be_used_again(
    database: Database,
) -> None:
    created = await create_token(database, "ci", ["read"])
    await revoke_token(database, "ci")
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        await TokenVerifier(database).verify(created.secret)
    again = await create_token(database, "ci", ["admin"])
    assert (await TokenVerifier(database).verify(again.secret)).scopes == {"admin"}
    everything = await list_tokens(database, include_revoked=True)
    now = datetime.now(UTC)
    assert [(t.name, t.status(now)) for t in everything] == [
        ("ci", "revoked"),
        ("ci", "active"),
    ]
    assert [t.scopes for t in await list_tokens(database)] == [("admin",)]
    with pytest.raises(NotFoundError):
        await revoke_token(database, "nobody")


async def test_an_expired_token_is_refused(database: Database) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    created = await create_token(database, "old", ["read"], expires_in_days=2, now=long_ago)
    with pytest.raises(AuthenticationError, match="expired"):
        await TokenVerifier(database).verify(created.secret)


async def test_names_are_unique_among_active_tokens(database: Database) -> None:
    await create_token(database, "ci", ["read"])
    with pytest.raises(ConflictError, match="revoke it first"):
        await create_token(database, "ci", ["read"])


async def test_bad_names_scopes_and_expiries_are_refused_together(database: Database) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await create_token(database, "has space", ["write", "deploy:a/b"], expires_in_days=0)
    assert [p.path for p in refused.value.problems] == ["name", "scope", "scope", "expiresIn"]
    assert await list_tokens(database) == []


async def test_use_is_recorded_at_most_once_a_minute(database: Database) -> None:
    created = await create_token(database, "ci", ["read"])
    assert (await list_tokens(database))[0].last_used_at is None
    clock = [datetime.now(UTC)]
    verifier = TokenVerifier(database, clock=lambda: clock[0])
    await verifier.verify(created.secret)
    first = (await list_tokens(database))[0].last_used_at
    assert first is not None
    assert abs(first - clock[0]) < timedelta(seconds=1)
    clock[0] += timedelta(seconds=30)
    await verifier.verify(created.secret)
    assert (await list_tokens(database))[0].last_used_at == first
    clock[0] += timedelta(seconds=60)
    await verifier.verify(created.secret)
    assert (await list_tokens(database))[0].last_used_at == clock[0]
