"""Money: integer micro-INR, exact conversions, the one rounding helper."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.money import (
    MICROS_PER_INR,
    ceil_fraction,
    format_inr,
    inr_to_micros,
    micros_to_inr,
    to_fraction,
)

SETTINGS = settings(max_examples=200, deadline=None)
# Below 2**33 INR a double's spacing is finer than one micro-rupee, so an INR float
# identifies its micros exactly (beyond ~8.6e9 INR neighbouring micros share a double).
EXACT_FLOAT_MICROS = 2**33 * MICROS_PER_INR - 1


def decimal_string(whole: int, frac: int, places: int, negative: bool = False) -> str:
    text = f"{whole}.{frac:0{places}d}" if places else str(whole)
    return ("-" if negative else "") + text


# ----------------------------------------------------------------- to_fraction
def test_to_fraction_reads_decimal_strings_exactly():
    assert to_fraction("0.1") == Fraction(1, 10)
    assert to_fraction("83.5") == Fraction(167, 2)
    assert to_fraction(Decimal("0.15")) == Fraction(3, 20)
    assert to_fraction(7) == Fraction(7)
    frac = Fraction(1, 3)
    assert to_fraction(frac) is frac


def test_to_fraction_reads_floats_through_their_repr_not_their_binary_value():
    assert to_fraction(0.1) == Fraction(1, 10)
    assert to_fraction(0.1) != Fraction(0.1)
    assert to_fraction(0.075) == Fraction(3, 40)


@pytest.mark.parametrize("value", [True, False, None, [1], {"a": 1}])
def test_to_fraction_refuses_non_numbers_with_type_error(value):
    with pytest.raises(TypeError):
        to_fraction(value)


@pytest.mark.parametrize("value", ["abc", "", "1.2.3", "1,5"])
def test_to_fraction_refuses_malformed_strings_with_value_error(value):
    with pytest.raises(ValueError):
        to_fraction(value)


@SETTINGS
@given(st.integers(min_value=-10**12, max_value=10**12), st.integers(min_value=0, max_value=8))
def test_to_fraction_of_a_decimal_string_equals_the_exact_rational(units, places):
    text = str(Decimal(units).scaleb(-places))
    assert to_fraction(text) == Fraction(units, 10**places)


# ----------------------------------------------------------------- ceil_fraction
@SETTINGS
@given(st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=1, max_value=10**18))
def test_ceil_fraction_is_the_mathematical_ceiling(num, den):
    value = Fraction(num, den)
    result = ceil_fraction(value)
    assert isinstance(result, int)
    assert result == math.ceil(value)
    assert result - 1 < value <= result


# ----------------------------------------------------------------- inr_to_micros
@SETTINGS
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=999_999),
       st.integers(min_value=0, max_value=6), st.booleans())
def test_inr_to_micros_takes_up_to_six_decimals_exactly(whole, frac, places, negative):
    frac = frac % (10**places) if places else 0
    text = decimal_string(whole, frac, places, negative)
    expected = (whole * MICROS_PER_INR + frac * 10**(6 - places)) * (-1 if negative else 1)
    micros = inr_to_micros(text)
    assert isinstance(micros, int)
    assert micros == expected
    assert inr_to_micros(Decimal(text)) == expected


@SETTINGS
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=7, max_value=12),
       st.integers(min_value=1, max_value=10**12))
def test_inr_to_micros_rejects_more_than_six_decimals(whole, places, frac):
    frac = frac % (10**places)
    if frac % 10**(places - 6) == 0:       # make the 7th+ decimals non-zero
        frac += 1
    text = decimal_string(whole, frac, places)
    with pytest.raises(ValueError, match="6 decimal"):
        inr_to_micros(text)


@pytest.mark.parametrize("value", ["0.0000001", "1.1234567", 1e-7, 0.1 + 0.2, Fraction(1, 3)])
def test_inr_to_micros_rejects_sub_micro_amounts(value):
    with pytest.raises(ValueError):
        inr_to_micros(value)


def test_inr_to_micros_reads_floats_as_their_shortest_decimal():
    assert inr_to_micros(0.1) == 100_000
    assert inr_to_micros(1.5) == 1_500_000
    assert inr_to_micros(100) == 100_000_000


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", float("nan"), float("inf")])
def test_inr_to_micros_rejects_non_finite_amounts_with_value_error(value):
    # A person typing `--credits inf` gets a clean ValueError, not an OverflowError traceback.
    with pytest.raises(ValueError):
        inr_to_micros(value)


# ----------------------------------------------------------------- format_inr
@pytest.mark.parametrize("micros, text", [
    (0, "0.000000"), (1, "0.000001"), (1_500_000, "1.500000"), (-1, "-0.000001"),
    (-1_500_000, "-1.500000"), (123_456_789, "123.456789"), (10**15, "1000000000.000000"),
])
def test_format_inr_examples(micros, text):
    assert format_inr(micros) == text


@SETTINGS
@given(st.integers(min_value=-10**20, max_value=10**20))
def test_format_inr_round_trips_and_has_six_places(micros):
    text = format_inr(micros)
    assert len(text.split(".")[1]) == 6
    assert Decimal(text) * MICROS_PER_INR == micros
    assert inr_to_micros(text) == micros


# ----------------------------------------------------------------- micros_to_inr
@SETTINGS
@given(st.integers(min_value=-EXACT_FLOAT_MICROS, max_value=EXACT_FLOAT_MICROS))
def test_micros_to_inr_is_the_nearest_float_and_round_trips(micros):
    inr = micros_to_inr(micros)
    assert type(inr) is float
    assert inr == float(Fraction(micros, MICROS_PER_INR))       # correctly rounded
    assert inr_to_micros(inr) == micros                          # identifies its micros
    assert inr_to_micros(json.loads(json.dumps(inr))) == micros  # and survives JSON


def test_micros_to_inr_examples():
    assert micros_to_inr(1_500_000) == 1.5
    assert micros_to_inr(1) == 0.000001
    assert micros_to_inr(-250_000) == -0.25
    assert json.dumps(micros_to_inr(14_403_750)) == "14.40375"
