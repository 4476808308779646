"""Rupees with Indian digit grouping; times in the user's zone."""

from __future__ import annotations

from aicredits.web.formatting import inr, number, when, zone


def test_rupees_use_indian_grouping_to_the_paisa():
    assert inr(123_456_780_000) == "₹1,23,456.78"
    assert inr(12_345_678_900_000) == "₹1,23,45,678.90"
    assert inr(0) == "₹0.00"
    assert inr(-2_500_000) == "-₹2.50"
    assert inr(5_005_000) == "₹5.00"          # half-even to the paisa
    assert inr(1_234) == "<₹0.01"             # not zero, not a misleading ₹0.00
    assert inr(1_234, exact=True) == "₹0.001234"
    assert inr(None) == "—"
    assert number(1234567) == "12,34,567"


def test_times_are_shown_in_the_zone():
    ms = 1_767_225_600_000            # 2026-01-01 00:00 UTC
    assert when(ms, zone(None, "Asia/Kolkata")) == "1 Jan 2026, 05:30"
    assert when(ms, zone("America/New_York", "Asia/Kolkata")) == "31 Dec 2025, 19:00"
    assert when(ms, zone("Not/AZone", "Asia/Kolkata")) == "1 Jan 2026, 05:30"
    assert when(None, zone(None, "Asia/Kolkata")) == "never"
