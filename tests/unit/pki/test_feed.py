"""The revocation feed follower: late commits (gaps) are picked up, nothing twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from certctl.ra.revocation_feed import MAX_GAP, FeedFollower
from certctl.storage import inventory
from certctl.storage.schema import certificate_revocations
from tests.unit.pki.support import World


def add_row(world: World, seq: int) -> str:
    """A feed row with an explicit seq, as a transaction that took it would commit it."""
    _, version = world.issue()
    with world.db.write() as conn:
        conn.execute(
            certificate_revocations.insert().values(
                seq=seq,
                serial=version.serial,
                issuer_id=world.issuer.id,
                revoked_at=datetime.now().astimezone(),
                reason=1,
                actor="test",
            )
        )
    return version.serial


def seqs(follower: FeedFollower) -> list[int]:
    return [row.seq for row in follower.poll()]


def test_starts_after_what_is_already_there(world: World) -> None:
    add_row(world, 1)
    follower = FeedFollower(world.db, ticker=world.ticker)
    assert follower.last_seq == 1
    assert seqs(follower) == []
    add_row(world, 2)
    assert seqs(follower) == [2]
    assert seqs(follower) == []


def test_a_late_commit_below_the_last_seen_seq_is_not_missed(world: World) -> None:
    follower = FeedFollower(world.db, ticker=world.ticker)
    add_row(world, 1)
    add_row(world, 3)  # seq 2 taken by a transaction that has not committed yet
    assert seqs(follower) == [1, 3]
    assert seqs(follower) == []
    add_row(world, 2)
    assert seqs(follower) == [2]
    add_row(world, 4)
    assert seqs(follower) == [4]  # 1 and 3 are not reported again


def test_a_gap_that_never_fills_is_given_up(world: World) -> None:
    follower = FeedFollower(world.db, ticker=world.ticker, gap_wait=60)
    add_row(world, 2)  # seq 1 rolled back
    assert seqs(follower) == [2]
    world.ticker.advance(61)
    assert seqs(follower) == []
    add_row(world, 1)  # far too late: a number that was given up is not read again
    add_row(world, 3)
    assert seqs(follower) == [3]


def test_a_sequence_jump_is_not_a_gap(world: World) -> None:
    follower = FeedFollower(world.db, ticker=world.ticker)
    add_row(world, MAX_GAP + 10)
    assert seqs(follower) == [MAX_GAP + 10]
    add_row(world, 5)
    assert seqs(follower) == []


def test_pages_are_followed(world: World) -> None:
    follower = FeedFollower(world.db, ticker=world.ticker)
    _, template = world.issue(record=False)
    serials = [format(seq * 7919 + 2**70, "x") for seq in range(1, 1203)]
    with world.db.write() as conn:
        for serial in serials:  # inventory rows the feed rows refer to
            version = replace(
                template,
                id=f"cert-{serial}",
                certificate_id=f"mc-{serial}",
                serial=serial,
                fingerprint_sha256=serial.rjust(64, "0"),
            )
            inventory.insert_certificate(
                conn, version, name="x", common_name="x", sans=["x"], now=template.created_at
            )
        conn.execute(
            certificate_revocations.insert(),
            [
                {
                    "seq": seq,
                    "serial": serial,
                    "issuer_id": world.issuer.id,
                    "revoked_at": datetime.now().astimezone(),
                    "reason": 0,
                    "actor": "test",
                }
                for seq, serial in enumerate(serials, start=1)
            ],
        )
    assert seqs(follower) == list(range(1, 1203))


def test_recent(world: World) -> None:
    serials = [add_row(world, seq) for seq in (1, 2, 3)]
    follower = FeedFollower(world.db, ticker=world.ticker)
    assert [row.serial for row in follower.recent(2)] == serials[1:]
