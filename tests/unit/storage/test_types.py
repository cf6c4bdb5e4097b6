"""UTCDateTime: aware UTC in, aware UTC out, on every backend; naive datetimes refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import TypeDecorator, create_engine, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError

from certctl.storage import nonces
from certctl.storage.db import Database
from certctl.storage.schema import UTCDateTime, used_nonces

KOLKATA = timezone(timedelta(hours=5, minutes=30))
NEW_YORK = timezone(timedelta(hours=-5))


def stored(db: Database, nonce: str) -> datetime:
    with db.read() as conn:
        value = conn.execute(
            select(used_nonces.c.expires_at).where(used_nonces.c.nonce == nonce)
        ).scalar_one()
    assert isinstance(value, datetime)
    return value


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2030, 1, 2, 8, 34, 5, 123456, tzinfo=KOLKATA),
        datetime(2029, 12, 31, 23, 59, 59, tzinfo=NEW_YORK),
    ],
)
def test_aware_datetimes_round_trip_as_utc(db: Database, moment: datetime) -> None:
    with db.write() as conn:
        nonces.consume(conn, "n", moment)
    back = stored(db, "n")
    assert back == moment
    assert back.tzinfo is UTC
    assert back.utcoffset() == timedelta(0)
    assert back.microsecond == moment.microsecond


def test_instants_compare_in_sql_regardless_of_the_zone_given(db: Database) -> None:
    """Stored as the UTC instant, so SQL comparisons and ordering are by time."""
    early = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    with db.write() as conn:
        # 11:00 UTC written as 16:30 in Kolkata: earlier than 'early' despite the digits.
        nonces.consume(conn, "expired", early.astimezone(KOLKATA) - timedelta(hours=1))
        nonces.consume(conn, "live", early.astimezone(NEW_YORK) + timedelta(hours=1))
    with db.write() as conn:
        assert nonces.purge_expired(conn, early) == 1
    with db.read() as conn:
        left = conn.execute(text("SELECT nonce FROM acme_used_nonces")).scalars().all()
    assert left == ["live"]


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError) as info, db.write() as conn:
        nonces.consume(conn, "naive", datetime(2030, 1, 1, 12, 0))
    assert isinstance(info.value.orig, ValueError)
    assert "naive" in str(info.value.orig)
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM acme_used_nonces")).scalar_one() == 0


def test_none_passes_through() -> None:
    decorator = UTCDateTime()
    for url in ("sqlite://", "postgresql+psycopg://"):
        dialect = create_engine(url).dialect
        assert decorator.process_bind_param(None, dialect) is None
        assert decorator.process_result_value(None, dialect) is None


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2030, 1, 2, 8, 34, 5, 7, tzinfo=KOLKATA),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sqlite_text_is_sqlalchemys_own(moment: datetime) -> None:
    """UTCDateTime's quick SQLite processors write and read the text SQLAlchemy's DATETIME
    would (the stored format, and so SQL comparisons, do not change with them)."""
    dialect = sqlite.dialect()
    impl = UTCDateTime().dialect_impl(dialect)
    assert isinstance(impl, UTCDateTime)
    own_bind = TypeDecorator.bind_processor(impl, dialect)
    own_result = TypeDecorator.result_processor(impl, dialect, None)
    bind, result = impl.bind_processor(dialect), impl.result_processor(dialect, None)
    assert own_bind is not None and own_result is not None
    assert bind is not None and result is not None
    assert bind(moment) == own_bind(moment)
    back = result(bind(moment))
    assert back == own_result(own_bind(moment)) == moment
    assert isinstance(back, datetime) and back.tzinfo is UTC
    # Text SQLite itself writes (CURRENT_TIMESTAMP) and text with an offset read as UTC.
    assert result("2030-01-02 03:04:05") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert result("2030-01-02 08:34:05+05:30") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2030, 1, 1))
