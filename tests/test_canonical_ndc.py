"""NDC normalization: every accepted written form maps to the one 11-digit code."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.canonical.ndc import InvalidNdc, format_ndc11, normalize_ndc

digits = lambda size: st.text("0123456789", min_size=size, max_size=size)  # noqa: E731


@given(digits(11))
def test_eleven_digits_are_already_canonical_and_survive_formatting(ndc11):
    assert normalize_ndc(ndc11) == ndc11
    assert normalize_ndc(format_ndc11(ndc11)) == ndc11


@given(digits(4), digits(4), digits(2))
def test_4_4_2_pads_the_labeler(labeler, product, package):
    assert normalize_ndc(f"{labeler}-{product}-{package}") == f"0{labeler}{product}{package}"


@given(digits(5), digits(3), digits(2))
def test_5_3_2_pads_the_product(labeler, product, package):
    assert normalize_ndc(f"{labeler}-{product}-{package}") == f"{labeler}0{product}{package}"


@given(digits(5), digits(4), digits(1))
def test_5_4_1_pads_the_package(labeler, product, package):
    assert normalize_ndc(f"{labeler}-{product}-{package}") == f"{labeler}{product}0{package}"


@given(st.sampled_from([(4, 4, 2), (5, 3, 2), (5, 4, 1)]), st.data())
def test_every_ten_digit_layout_gives_eleven_digits_keeping_the_digits_in_order(layout, data):
    parts = [data.draw(digits(width)) for width in layout]

    ndc11 = normalize_ndc("-".join(parts))

    assert len(ndc11) == 11 and ndc11.isdigit()
    assert ndc11.replace("0", "") == "".join(parts).replace("0", "")


def test_spaces_and_surrounding_whitespace_are_tolerated():
    assert normalize_ndc(" 0409 4888 02 ") == "00409488802"


@pytest.mark.parametrize("bad, reason", [
    ("0409488802", "needs dashes"),
    ("040948880", "10 or 11 digits"),
    ("0409-4888", "three segments"),
    ("04-094888-802", "segments must be"),
    ("0409-48A8-02", "only digits"),
    ("", "only digits"),
])
def test_malformed_ndcs_are_refused_with_a_reason(bad, reason):
    with pytest.raises(InvalidNdc, match=reason):
        normalize_ndc(bad)


@given(st.text(max_size=20))
def test_arbitrary_text_is_either_an_ndc11_or_refused(text):
    try:
        result = normalize_ndc(text)
    except InvalidNdc:
        return
    assert len(result) == 11 and result.isdigit()


@pytest.mark.parametrize("lookalike", ["０４０９-４８８８-０２", "٠٤٠٩-٤٨٨٨-٠٢", "۰۴۰۹۴۸۸۸۸۰۲",
                                       "0409–4888–02"])
def test_ndcs_in_other_scripts_digits_or_dashes_are_refused(lookalike):
    with pytest.raises(InvalidNdc, match="ASCII"):
        normalize_ndc(lookalike)


@given(st.text(st.characters(categories=["Nd"]), min_size=11, max_size=11)
       .filter(lambda text: not text.isascii()))
def test_eleven_digits_of_any_other_script_are_not_an_ndc(digits_elsewhere):
    with pytest.raises(InvalidNdc):
        normalize_ndc(digits_elsewhere)


def test_an_overlong_ndc_is_refused_before_it_is_parsed():
    with pytest.raises(InvalidNdc, match="at most"):
        normalize_ndc("0" * 100_000)
