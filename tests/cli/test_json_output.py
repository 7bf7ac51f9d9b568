"""``--json`` output is written by ``dumps_indented``: byte for byte ``json.dumps(value, indent=2)``."""
from __future__ import annotations

import json
import math

from hypothesis import given, settings, strategies as st

from carbonsched.cli._common import dumps_indented

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 1, True]))
keys = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.booleans(), st.none(), st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(values)
def test_same_text_as_json_dumps(value):
    assert dumps_indented(value) == json.dumps(value, indent=2)


def test_repeated_dicts_are_each_written_as_json_would():
    # equal content is shared text only where the text would be equal: -0.0 / 0.0 and 1 / 1.0 / True differ
    rows = [{"a": v, "zones": ["x", v]} for v in (0.0, -0.0, 1, 1.0, True, math.nan, math.nan)]
    doc = {"jobs": [{"name": str(i), "placement": r, "again": dict(r)} for i, r in enumerate(rows)], "n": []}
    assert dumps_indented(doc) == json.dumps(doc, indent=2)


def test_not_plain_json_falls_back_to_json_dumps():
    class Text(str):
        pass

    assert dumps_indented({"a": Text("b")}) == json.dumps({"a": Text("b")}, indent=2)
    try:
        dumps_indented({"a": object()})
    except TypeError as exc:
        assert "not JSON serializable" in str(exc)
    else:
        raise AssertionError("expected json.dumps's TypeError")
