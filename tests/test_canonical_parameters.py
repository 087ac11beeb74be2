"""Request schemas refuse unknown parameters, naming them only when they look like names."""

import pytest
from marshmallow import ValidationError, fields

from app.canonical.parameters import NoParametersSchema, StrictSchema


class Filters(StrictSchema):
    medication = fields.String()
    page_size = fields.Integer(data_key="pageSize")


def test_a_misspelt_parameter_is_refused_by_name():
    with pytest.raises(ValidationError) as refused:
        Filters().load({"medicaton": "00409488802"})

    assert refused.value.messages == {"medicaton": ["Unknown field."]}


def test_declared_parameters_are_known_by_their_data_key():
    assert Filters().load({"medication": "x", "pageSize": "5"}) == {"medication": "x",
                                                                   "page_size": 5}


def test_an_unknown_name_that_is_no_parameter_name_is_counted_not_repeated():
    with pytest.raises(ValidationError) as refused:
        Filters().load({"Jane Canary": "1", "MRN 0001234": "2", "limit": "5"})

    messages = refused.value.messages
    assert messages["limit"] == ["Unknown field."]
    assert set(messages) == {"limit", "_unknown"}
    assert "Jane" not in str(messages) and "0001234" not in str(messages)


def test_a_list_without_parameters_refuses_any():
    with pytest.raises(ValidationError) as refused:
        NoParametersSchema().load({"status": "open"})

    assert refused.value.messages == {"status": ["Unknown field."]}
