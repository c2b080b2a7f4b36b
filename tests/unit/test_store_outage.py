"""Riding out a PostgreSQL outage: what counts as one, retries with waits, and the bound."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aegis_ray.adapters.postgres.db import StoreOutage, StoreUnavailable, ride_out, unavailable


@pytest.mark.parametrize(
    "err",
    [
        ConnectionRefusedError("refused"),
        StoreUnavailable("PostgreSQL at h:1 is unavailable"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_an_unreachable_database_is_an_outage(err: BaseException) -> None:
    assert unavailable(err)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.exceptions.UndefinedColumnError("no such column"),
        asyncpg.exceptions.UniqueViolationError("duplicate"),
        ValueError("bad id"),
    ],
)
def test_a_wrong_query_is_not_an_outage(err: BaseException) -> None:
    assert not unavailable(err)


def test_the_call_is_tried_again_until_the_database_is_back() -> None:
    tries: list[int] = []
    waits: list[int] = []

    async def call() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionRefusedError("refused")
        return "stored"

    result = asyncio.run(ride_out(call, bound_s=30, on_wait=lambda: waits.append(1)))
    assert result == "stored" and len(tries) == 3 and len(waits) == 2


def test_past_the_bound_the_outage_is_the_error() -> None:
    async def call() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(StoreOutage, match=r"unavailable for more than 0.2s .*refused"):
        asyncio.run(ride_out(call, bound_s=0.2))


def test_other_errors_are_raised_at_once() -> None:
    tries: list[int] = []

    async def call() -> None:
        tries.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(ride_out(call, bound_s=30))
    assert len(tries) == 1


def test_a_call_given_as_a_lambda_is_awaited() -> None:
    async def fetch(n: int) -> int:
        return n + 1

    assert asyncio.run(ride_out(lambda: fetch(1), bound_s=5)) == 2
