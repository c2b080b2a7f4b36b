"""What of a chatty agent's output is stored: lines cut, the quota, and the count of the rest."""

from __future__ import annotations

from aegis_ray.core.log_quota import LogQuota


def test_short_lines_are_stored_as_they_are() -> None:
    q = LogQuota(line_max=10, total_max=100)
    assert q.admit("hello") == "hello" and q.used == 5 and q.summary() == ""


def test_a_long_line_is_cut_at_the_limit_and_says_how_much_was_dropped() -> None:
    q = LogQuota(line_max=10, total_max=1000)
    assert q.admit("x" * 25) == "xxxxxxxxxx [aegis: line cut, 15 more bytes not stored]"
    assert (q.cut_lines, q.dropped_bytes) == (1, 15)
    assert q.summary() == "log output not stored: 1 lines cut at 10 bytes; 15 bytes dropped"


def test_a_cut_never_splits_a_character() -> None:
    q = LogQuota(line_max=5, total_max=1000)
    stored = q.admit("ééé")  # 6 bytes: the third character does not fit
    assert stored is not None and stored.startswith("éé [aegis: line cut, 2 more bytes")


def test_past_the_quota_one_marker_then_only_counting() -> None:
    q = LogQuota(line_max=100, total_max=12)
    assert q.admit("12345") == "12345"
    assert q.admit("67890") == "67890"
    marker = q.admit("abcde")
    assert marker is not None and "log quota of 12 bytes reached" in marker
    assert q.full
    assert q.admit("fghij") is None and q.admit("k") is None
    assert (q.dropped_lines, q.dropped_bytes) == (3, 11)
    assert q.summary() == (
        "log output not stored: 3 lines over the quota of 12 bytes; 11 bytes dropped"
    )


def test_the_quota_counts_what_earlier_attempts_stored() -> None:
    q = LogQuota(line_max=100, total_max=10, used=10)
    assert q.full and q.admit("more") is None and q.dropped_bytes == 4
