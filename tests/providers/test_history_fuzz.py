"""Fuzzing the history-file reader (issue 11): whatever a file holds, the reader returns hourly
values in range or refuses with a UserInputError naming the file; never another exception."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonsched.errors import UserInputError
from carbonsched.providers.grid.history import read_history_csv

TIMES = st.one_of(st.sampled_from(["2022-01-01T00:00:00Z", "2022-01-01T01:00:00+01:00", "2022-01-01 02:00:00",
                                   "not a time", "", "2022-13-40T99:00Z", "9999-12-31T23:00Z"]),
                  st.datetimes().map(lambda d: d.isoformat()))
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                   st.sampled_from(["", "nan", "NULL", "-0", "1e400", "12,5", "\x00", '"quoted"']))
HEADERS = st.sampled_from(["datetime,carbon_intensity", "datetime_utc,DE,FR", "time,value", "Datetime (UTC),Zone Id",
                           "", "datetime"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADERS, rows=st.lists(st.tuples(TIMES, VALUES, VALUES), max_size=30), zone=st.sampled_from([None, "DE"]))
def test_history_reader_returns_sane_values_or_a_user_error(tmp_path, header, rows, zone):
    path = tmp_path / "h.csv"
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    try:
        values, start, info = read_history_csv(path, zone=zone)
    except UserInputError as exc:
        assert str(path) in str(exc)
        return
    finite = values[np.isfinite(values)]
    assert start.tzinfo is not None and len(values) == info["hours"]
    assert (finite >= 0).all() and (finite <= 3000).all()
