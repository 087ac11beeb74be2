"""Unit codes: native spellings of one unit map to one canonical code."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.canonical.units import InvalidUnitCode, canonical_unit

unit_letters = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
unit_numbers = st.integers(min_value=0, max_value=999)


@given(unit_letters, unit_numbers, st.sampled_from(["-", "", " ", "_", " - "]), st.booleans())
def test_every_spelling_of_a_numbered_unit_is_the_same_unit(letters, number, separator, lower):
    native = f"{letters}{separator}{number}"
    native = native.lower() if lower else native

    assert canonical_unit(native) == f"{letters}-{number}"


@given(unit_letters, unit_numbers)
def test_canonical_codes_are_fixed_points(letters, number):
    code = canonical_unit(f"{letters}{number}")

    assert canonical_unit(code) == code


def test_inventory_and_emar_spellings_meet():
    assert canonical_unit("ICU-3") == canonical_unit("ICU3") == "ICU-3"
    assert canonical_unit("MEDSURG-06") == "MEDSURG-6"


def test_named_units_keep_their_name():
    assert canonical_unit("pharmacy") == "PHARMACY"
    assert canonical_unit("Main Pharmacy") == "MAIN-PHARMACY"


def test_tenant_code_map_wins_over_the_pattern():
    code_map = {"4 West": "MEDSURG-4", "ICU3": "CCU-1"}

    assert canonical_unit("4 WEST", code_map) == "MEDSURG-4"
    assert canonical_unit("icu3", code_map) == "CCU-1"
    assert canonical_unit("ICU-2", code_map) == "ICU-2"


@pytest.mark.parametrize("bad", ["", "   ", "3", "ICU#3", "ICU-3-B"])
def test_unreadable_unit_codes_are_refused(bad):
    with pytest.raises(InvalidUnitCode):
        canonical_unit(bad)


@pytest.mark.parametrize("lookalike", ["ıcu-3", "ſICU-3", "ICU-٣", "ＩＣＵ-3", "ICU-３"])
def test_unit_codes_that_only_look_like_ascii_are_refused(lookalike):
    with pytest.raises(InvalidUnitCode, match="ASCII"):
        canonical_unit(lookalike)


@given(st.text(min_size=1, max_size=12).filter(lambda text: not text.isascii()))
def test_any_code_with_a_non_ascii_character_is_refused(code):
    with pytest.raises(InvalidUnitCode):
        canonical_unit(code)


@pytest.mark.parametrize("length", [33, 4_000, 100_000])
def test_overlong_unit_codes_are_refused_before_they_are_parsed(length):
    with pytest.raises(InvalidUnitCode, match="at most"):
        canonical_unit("ICU-" + "9" * length)
