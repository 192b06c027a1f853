"""Reading an id-ordered table forward: holes left by transactions that commit late are
read again until they appear or are too old to come; ids are never counted twice."""

from __future__ import annotations

from app.domain.read_cursor import GAP_SECONDS, MAX_GAPS, ReadCursor


def test_consecutive_ids_leave_no_holes() -> None:
    cursor = ReadCursor(10)
    cursor.advance([11, 12, 13], at=0.0)
    assert (cursor.last_id, cursor.wanted()) == (13, [])


def test_a_hole_is_asked_for_until_it_commits() -> None:
    cursor = ReadCursor(10)
    cursor.advance([11, 13, 16], at=0.0)
    assert (cursor.last_id, cursor.wanted()) == (16, [12, 14, 15])
    cursor.advance([14, 17], at=1.0)  # 14 committed late; 17 is new
    assert (cursor.last_id, cursor.wanted()) == (17, [12, 15])


def test_old_holes_are_forgotten_and_their_number_bounded() -> None:
    cursor = ReadCursor(0)
    cursor.advance([2], at=0.0)
    cursor.advance([3], at=GAP_SECONDS + 1)
    assert cursor.wanted() == []
    cursor.advance([10 * MAX_GAPS], at=GAP_SECONDS + 2)
    assert len(cursor.wanted()) <= MAX_GAPS
    assert cursor.last_id == 10 * MAX_GAPS


def test_ids_already_read_do_not_move_it_back() -> None:
    cursor = ReadCursor(20)
    cursor.advance([5, 21], at=0.0)
    assert (cursor.last_id, cursor.wanted()) == (21, [])


def test_json_round_trip() -> None:
    cursor = ReadCursor(5, {3: 1.5})
    again = ReadCursor.from_json(cursor.last_id, cursor.to_json())
    assert again == cursor
