"""A sync file's check times, checked by a regex and the date's own ranges (the import's
cost a check kept small) rather than strptime: exactly the times the journal writes are
taken, and none strptime refuses."""

from datetime import datetime

import pytest

from edge_app.errors import PufError
from edge_app.journal import TIME_FORMAT
from edge_app.journal_sync import check_time, read_sync_file
from tests.edge_app.test_journal_sync import _sync_file, _with

VALID = "2024-02-29T23:59:59Z"
MALFORMED = ["2026-02-30T08:00:00Z", "2026-02-28T24:00:00Z", "2026-02-28T23:60:00Z", "2026-02-28T23:00:60Z",
             "2026-13-01T08:00:00Z", "2026-00-01T08:00:00Z", "0000-01-01T00:00:00Z", "2025-02-29T00:00:00Z",
             "2026-02-28T23:00:00", "2026-02-28 23:00:00Z", "2026-02-28T23:00:000Z", "02026-02-28T23:00:00Z",
             "2026-02-28T23:00:00Z\n", " 2026-02-28T23:00:00Z", "2026-02-28T23:00:00+00:00", "",
             # strptime takes these, the journal never writes them (stricter, on purpose)
             "٢٠٢٦-02-28T23:00:00Z", "2026-02-2\u0668T23:00:00Z", "2026-2-8T3:0:0Z", "2026-02- 8T23:00:00Z",
             "2026-02-28t23:00:00z", "２０２６-02-28T23:00:00Z"]


def _strptime_and_written_back(time: str) -> bool:
    """The old check (strptime), and the same text written back (zero-padded ISO 8601, as the
    journal writes it; isoformat pads a year before 1000, which strftime does not)."""
    try:
        return datetime.strptime(time, TIME_FORMAT).isoformat() + "Z" == time
    except ValueError:
        return False


def _mutations(time: str) -> list[str]:
    """Every one-character change of `time`: replaced, dropped, or one inserted."""
    alphabet = "0129 -:TtZz\u0661\u0669\uff10+\n"
    out = []
    for i in range(len(time) + 1):
        out += [time[:i] + c + time[i + 1:] for c in alphabet] + [time[:i] + time[i + 1:]]
        out += [time[:i] + c + time[i:] for c in alphabet]
    return out


def _taken(time: str) -> bool:
    try:
        check_time(time)
    except PufError:
        return False
    return True


@pytest.mark.parametrize("seed", ["2026-11-25T07:31:02Z", VALID, "2100-02-28T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_a_time_is_taken_exactly_when_strptime_takes_it_and_it_is_written_as_the_journal_does(seed):
    candidates = [seed, *MALFORMED, *_mutations(seed)]
    wrong = [t for t in candidates if _taken(t) != _strptime_and_written_back(t)]
    assert wrong == []
    assert _taken(seed) and sum(map(_taken, candidates)) > 1  # the mutations take some (a digit for a digit)


@pytest.mark.parametrize("time", ["٢٠٢٦-11-01T08:00:00Z", "2026-1-1T8:0:0Z", "2026-11- 1T08:00:00Z",
                                  "2026-11-01t08:00:00z"])
def test_a_time_strptime_took_but_no_journal_writes_is_refused(tmp_path, time):
    """Such a time would reach the database as text that PostgreSQL's cast in the alerts
    query does not read (other scripts' digits) or that sorts wrongly against the others."""
    with pytest.raises(PufError, match="entry 0: time must be UTC.*refused, nothing imported"):
        read_sync_file(_sync_file(tmp_path, _with(1, time)))
