"""API keys: format, randomness, the stored hash and the display form."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.keys import (
    KEY_RE,
    display_form,
    generate_key,
    generate_key_id,
    hash_key,
    well_formed,
)

SETTINGS = settings(max_examples=200, deadline=None)
keys_st = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sk-" + h)


def test_generated_keys_have_the_documented_format():
    for _ in range(100):
        key = generate_key()
        assert re.fullmatch(r"sk-[0-9a-f]{64}", key)
        assert well_formed(key)
        assert KEY_RE.fullmatch(key)


def test_generated_keys_and_ids_are_unique_over_many():
    keys = [generate_key() for _ in range(20_000)]
    assert len(set(keys)) == len(keys)
    ids = [generate_key_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"key_[0-9a-f]{16}", i) for i in ids)


def test_generated_keys_are_not_biased():
    # 64 hex digits x 2,000 keys: every digit appears, none dominates (a CSPRNG smell test)
    digits = "".join(generate_key()[3:] for _ in range(2_000))
    counts = {d: digits.count(d) for d in "0123456789abcdef"}
    expected = len(digits) / 16
    assert all(0.9 * expected < c < 1.1 * expected for c in counts.values()), counts


def test_malformed_keys_are_not_well_formed():
    good = generate_key()
    for bad in ["", "sk-", good[:-1], good + "0", good.upper(), "sk_" + good[3:], " " + good,
                good + "\n", "sk-" + "g" * 64, "pk-" + good[3:], "sk-" + "A" * 64]:
        assert not well_formed(bad), bad


@SETTINGS
@given(keys_st)
def test_hash_is_sha256_hex(key):
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key[3:] not in digest
    assert digest == hash_key(key)


@SETTINGS
@given(keys_st, keys_st)
def test_different_keys_have_different_hashes(a, b):
    if a != b:
        assert hash_key(a) != hash_key(b)


@SETTINGS
@given(keys_st)
def test_display_form_hides_the_middle(key):
    shown = display_form(key)
    assert shown.startswith(key[:7])
    assert shown.endswith(key[-4:])
    assert "…" in shown
    assert len(shown) <= 12
    assert key[7:-4] not in shown
    hidden = len(key) - sum(1 for c in shown if c in "0123456789abcdef")
    assert hidden >= 50    # at most 8 of the 64 secret hex digits are shown
    assert not well_formed(shown)


def test_display_form_example():
    assert display_form("sk-" + "0123456789abcdef" * 4) == "sk-0123…cdef"
