"""Row ids: the ``id`` URL converter and the ``Id`` field type accept exactly 1 to 2**63 - 1."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import karaffe
from karaffe.ids import MAX_ID, Id, IdConverter, _at_most


@given(st.integers(min_value=-(10**25), max_value=10**25))
def test_the_converter_regex_matches_exactly_the_ids(number: int) -> None:
    matched = re.fullmatch(IdConverter.regex, str(number)) is not None
    assert matched == (1 <= number <= MAX_ID)


@given(st.integers(1, 10**6), st.integers(0, 10**7))
def test_the_bound_regex_is_exact_for_any_limit(limit: int, number: int) -> None:
    assert (re.fullmatch(_at_most(limit), str(number)) is not None) == (1 <= number <= limit)


@pytest.mark.parametrize("text", ["007", "+5", "5.0", " 5", "1e3", "", "٣"])
def test_the_converter_refuses_other_spellings(text: str) -> None:
    assert re.fullmatch(IdConverter.regex, text) is None


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "POST"])
@pytest.mark.parametrize("value", [str(2**63), "0", "99999999999999999999", str(MAX_ID + 10**18)])
def test_out_of_range_id_is_a_404_whatever_methods_the_url_has(method: str, value: str) -> None:
    app = karaffe.App("ids_test")
    app.configure({"TESTING": True}, environ={})

    @app.route("/api/things/<id:thing_id>", methods=["GET", "PATCH"])
    def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.delete("/api/things/<id:thing_id>")
    def delete_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    rv = app.test_client().open(f"/api/things/{value}", method=method)
    assert rv.status_code == 404
    assert app.test_client().get(f"/api/things/{MAX_ID}").get_json() == {"id": MAX_ID}


@pytest.mark.parametrize("value", [0, -1, 2**63, 10**30, True, "x"])
def test_id_field_refuses_values_outside_the_range(value: object) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Id).validate_python(value)


@pytest.mark.parametrize("value", [1, MAX_ID, "12"])
def test_id_field_accepts_the_range(value: object) -> None:
    assert 1 <= TypeAdapter(Id).validate_python(value) <= MAX_ID
