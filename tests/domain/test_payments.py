"""Top-up rules: rupee amounts as paise, fee and GST on top, refund shares, never below zero."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicredits.domain.ledger import KIND_RULES
from aicredits.domain.payments import (
    MICROS_PER_PAISA,
    TopupRefused,
    TopupTerms,
    format_paise,
    paise_to_micros,
    parse_inr,
    percent,
    quote,
    refund_claim,
    split_debit,
)

TERMS = TopupTerms(min_paise=10_000, max_paise=10_000_000, presets=(50_000, 100_000))


def test_a_paisa_is_ten_thousand_micro_rupees():
    assert MICROS_PER_PAISA == 10_000
    assert paise_to_micros(50_000) == 500_000_000       # 500 INR
    assert paise_to_micros(1) == 10_000


@pytest.mark.parametrize("text, paise", [("500", 50_000), ("500.5", 50_050), ("500.05", 50_005), (" 1.00 ", 100),
                                         ("0", 0), ("123456789012.99", 12_345_678_901_299)])
def test_parse_inr(text, paise):
    assert parse_inr(text) == paise


@pytest.mark.parametrize("text", ["", "abc", "-5", "5.001", "1e3", "5,00", "NaN", "500.", ".5", "1" * 13])
def test_parse_inr_refuses(text):
    with pytest.raises(TopupRefused):
        parse_inr(text)


@given(st.integers(min_value=0, max_value=10**14 - 1))
def test_format_and_parse_round_trip(paise):
    assert parse_inr(format_paise(paise)) == paise


def test_quote_without_fee_is_the_credits():
    q = quote(50_000, TERMS)
    assert (q.credit_paise, q.fee_paise, q.gst_paise, q.amount_paise, q.credit_micros) == (
        50_000, 0, 0, 50_000, 500_000_000)


def test_quote_with_fee_and_gst():
    terms = TopupTerms(10_000, 10_000_000, (), fee=percent("2"), gst=percent("18"))
    q = quote(50_000, terms)     # 500 INR: fee 10.00, GST 18% of 510.00 = 91.80
    assert (q.fee_paise, q.gst_paise, q.amount_paise) == (1_000, 9_180, 60_180)
    assert q.credit_micros == 500_000_000       # the wallet gets the credits, not the fee or tax
    q = quote(10_001, terms)     # 100.01: fee 2.0002 -> 2.00; GST 18% of 102.01 = 18.3618 -> 18.36
    assert (q.fee_paise, q.gst_paise) == (200, 1_836)


def test_quote_rounds_half_up_once():
    terms = TopupTerms(100, 10_000_000, (), fee=percent("0.5"))
    assert quote(100, terms).fee_paise == 1            # 0.5 paisa -> 1
    assert quote(300, terms).fee_paise == 2            # 1.5 -> 2
    assert quote(299, terms).fee_paise == 1            # 1.495 -> 1


@given(st.integers(min_value=10_000, max_value=10_000_000), st.decimals(min_value=0, max_value=10, places=2),
       st.decimals(min_value=0, max_value=28, places=2))
def test_quote_is_exact_and_in_range(credit, fee, gst):
    terms = TopupTerms(10_000, 10_000_000, (), fee=percent(fee), gst=percent(gst))
    q = quote(credit, terms)
    assert q.amount_paise == q.credit_paise + q.fee_paise + q.gst_paise
    assert abs(q.fee_paise - credit * Fraction(fee) / 100) <= Fraction(1, 2)
    assert abs(q.gst_paise - (credit + q.fee_paise) * Fraction(gst) / 100) <= Fraction(1, 2)
    assert q.credit_micros == credit * 10_000


def test_min_and_max():
    with pytest.raises(TopupRefused, match="smallest top-up is 100.00 INR"):
        quote(9_999, TERMS)
    with pytest.raises(TopupRefused, match="largest top-up is 100000.00 INR"):
        quote(10_000_001, TERMS)
    assert quote(10_000, TERMS).credit_paise == 10_000
    assert quote(10_000_000, TERMS).credit_paise == 10_000_000


def test_terms_are_checked():
    with pytest.raises(ValueError):
        TopupTerms(50, 1000, ())                 # below 1 INR
    with pytest.raises(ValueError):
        TopupTerms(10_000, 5_000, ())            # min above max
    with pytest.raises(ValueError, match="preset 5.00 INR"):
        TopupTerms(10_000, 20_000, (500,))
    for bad in ("-1", "101", "x"):
        with pytest.raises(ValueError):
            percent(bad)


def test_refund_claim_is_the_refunded_share_of_the_credits():
    # 500 INR credits paid as 601.80 with fee and GST
    assert refund_claim(60_180, 60_180, 500_000_000, 0) == 500_000_000          # full refund: all the credits
    assert refund_claim(30_090, 60_180, 500_000_000, 0) == 250_000_000          # half
    assert refund_claim(1, 60_180, 500_000_000, 0) == 8_309                     # 500e6/60180 rounded up
    assert refund_claim(50_000, 50_000, 500_000_000, 499_000_000) == 1_000_000  # never past what is left
    assert refund_claim(50_000, 50_000, 500_000_000, 500_000_000) == 0
    assert refund_claim(0, 50_000, 500_000_000, 0) == 0


@given(st.integers(min_value=100, max_value=10**9), st.lists(st.integers(min_value=1, max_value=10**9), max_size=6))
def test_refunds_never_claim_more_than_the_credits(amount, parts):
    credit = amount * 10_000
    claimed = 0
    for part in parts:
        claimed += refund_claim(part, amount, credit, claimed)
        assert 0 <= claimed <= credit
    if sum(parts) >= amount:
        assert claimed == credit


@pytest.mark.parametrize("wanted, balance, held, out", [
    (100, 500, 0, (100, 0)),
    (100, 50, 0, (50, 50)),
    (100, 500, 450, (50, 50)),      # in-flight holds stay covered
    (100, 0, 0, (0, 100)),
    (100, 30, 40, (0, 100)),
])
def test_split_debit_never_below_zero(wanted, balance, held, out):
    assert split_debit(wanted, balance, held) == out


def test_ledger_kinds_topup_credits_refund_debits():
    assert KIND_RULES["topup"].sign == 1 and KIND_RULES["refund"].sign == -1
    # both count in total_added: a refund takes back what its top-up added
    assert KIND_RULES["topup"].total == KIND_RULES["refund"].total == "added"
