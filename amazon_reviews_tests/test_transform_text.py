"""Tests of the text cleaning expressions (`amazon_reviews.transforms.text`)."""

from __future__ import annotations

import html
import unicodedata

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_series_equal

from amazon_reviews.transforms.text import (
    clean_label,
    clean_text,
    nfc_suspects,
    normalize_nfc,
    unescape_html,
)


def clean(values: list[str | None]) -> list[str | None]:
    frame = pl.DataFrame({"t": values}, schema={"t": pl.String})
    return frame.select(clean_text(pl.col("t"))).to_series().to_list()


def clean_one(value: str | None) -> str | None:
    return clean([value])[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # line breaks
        ("one<br />two", "one\ntwo"),
        ("one<br>two", "one\ntwo"),
        ("one<BR/>two", "one\ntwo"),
        ("one<Br  />two", "one\ntwo"),
        ("a<br/><br />b", "a\n\nb"),
        # tags stripped, text kept
        ("<b>bold</b> and <i>italic</i>", "bold and italic"),
        ('<a href="http://x.test/?a=1">link</a>', "link"),
        ("<p>para</p>", "para"),
        # a `<` that does not open a tag is text
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("a <3 b", "a <3 b"),
        # entities
        ("fish &amp; chips", "fish & chips"),
        ("&quot;quoted&quot;", '"quoted"'),
        ("it&#39;s", "it's"),
        ("it&apos;s", "it's"),
        ("&#34;x&#34;", '"x"'),
        ("smile &#128512;", "smile \U0001f600"),
        ("hex &#x1F600;", "hex \U0001f600"),
        ("wait&hellip;", "wait\u2026"),
        ("caf&eacute;", "caf\u00e9"),
        ("&lt;b&gt;not a tag&lt;/b&gt;", "<b>not a tag</b>"),
        # decoded exactly once, as html.unescape does
        ("&amp;lt;", "&lt;"),
        ("&amp;amp;", "&amp;"),
        ("&amp;#39;", "&#39;"),
        # references without their `;`, decoded as html.unescape does
        ("fish &amp chips", "fish & chips"),
        ("it&#39s", "it's"),
        ("&amp; &lt", "& <"),
        ("&copy 2024", "\u00a9 2024"),
        # a bare ampersand stays
        ("Tom & Jerry", "Tom & Jerry"),
        ("AT&T", "AT&T"),
        # NFC: e + combining acute accent becomes one code point
        ("cafe\u0301", "caf\u00e9"),
        ("\u212b", "\u00c5"),  # angstrom sign -> A with ring
        # trimming
        ("  padded \t\n", "padded"),
        ("<br />text<br />", "text"),
        ("&nbsp;x&nbsp;", "x"),
        ("inner  spaces kept", "inner  spaces kept"),
        # nothing left -> null
        ("", None),
        ("   ", None),
        (" \t\n ", None),
        ("<br />", None),
        ("<p></p>", None),
        ("&nbsp;", None),
        (None, None),
    ],
)
def test_clean_text(raw: str | None, expected: str | None) -> None:
    assert clean_one(raw) == expected


def test_clean_text_keeps_rows_aligned_and_dtype() -> None:
    values = [" a ", None, "&amp;", "", "caf&#233;", "<br>"]
    frame = pl.DataFrame({"t": values}, schema={"t": pl.String})
    out = frame.select(clean_text(pl.col("t"))).to_series()
    assert out.dtype == pl.String
    assert out.to_list() == ["a", None, "&", None, "caf\u00e9", None]


def test_clean_text_empty_frame() -> None:
    frame = pl.DataFrame({"t": []}, schema={"t": pl.String})
    out = frame.select(clean_text(pl.col("t"))).to_series()
    assert out.dtype == pl.String
    assert out.len() == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" B00X ", "B00X"), ("", None), ("  ", None), (None, None), ("a b", "a b")],
)
def test_clean_label(raw: str | None, expected: str | None) -> None:
    frame = pl.DataFrame({"t": [raw]}, schema={"t": pl.String})
    assert frame.select(clean_label(pl.col("t"))).item() == expected


def test_unescape_html_mixed_fast_and_slow_rows() -> None:
    values = ["&amp;", "&#128512;", None, "plain", "&eacute;&amp;", "&amp", "", "&#0;"]
    out = unescape_html(pl.Series("t", values, dtype=pl.String))
    expected = pl.Series("t", [None if v is None else html.unescape(v) for v in values])
    assert_series_equal(out, expected, check_names=False)


# Python's `str.strip` treats U+001C..U+001F (the ASCII information separators) as whitespace;
# Polars' `strip_chars` (Rust's `char::is_whitespace`) does not. Every other code point agrees
# (checked exhaustively over all of Unicode when this test was written), so only those four are
# excluded from the alphabet; `<` and `&` are excluded because they start markup.
_PLAIN_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8",  # no lone surrogates: Polars strings are UTF-8
        exclude_characters="<&\x1c\x1d\x1e\x1f",
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PLAIN_TEXT, min_size=1, max_size=5))
def test_clean_text_on_plain_text_is_nfc_and_strip(values: list[str]) -> None:
    expected = []
    for v in values:
        s = unicodedata.normalize("NFC", v).strip()
        expected.append(s or None)
    assert clean(values) == expected


_ENTITY = st.sampled_from(
    [
        "&amp;",
        "&lt;",
        "&gt;",
        "&quot;",
        "&#39;",
        "&#34;",
        "&apos;",
        "&nbsp;",
        "&hellip;",
        "&eacute;",
        "&copy;",
        "&AMP;",
        "&#128512;",
        "&#x1F600;",
        "&#X27;",
        "&#0;",
        "&#x110000;",
        "&#00000039;",
        "&amp",
        "&lt",
        "&copy",
        "&#39",
        "&#x27",
        "&notit;",
        "&bogus;",
        "&",
        "&#",
        "&#;",
        "&#x;",
        "&;",
        "& ",
        "&&",
        "&amp;lt;",
        "&amp;amp;",
        ";",
        "#",
        "<br>",
    ]
)
_ENTITY_TEXT = st.lists(
    st.one_of(_ENTITY, st.text(alphabet="ab1#x;& \n", max_size=3), st.text(max_size=3)),
    max_size=8,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _ENTITY_TEXT), max_size=6))
def test_unescape_html_matches_html_unescape(values: list[str | None]) -> None:
    out = unescape_html(pl.Series("t", values, dtype=pl.String))
    assert out.dtype == pl.String
    assert out.to_list() == [None if v is None else html.unescape(v) for v in values]


# Strings that stress NFC: base letters, precomposed letters, combining marks in any order,
# Hangul syllables and jamo, singletons (Angstrom, Ohm), composition exclusions (Devanagari
# nukta forms), and anything else in Unicode.
_NFC_ALPHABET = st.one_of(
    st.sampled_from(
        "aeAEoOé\u00c5\u212b\u2126\u0958\u0915\u093c\u1100\u1161\u11a8\uac00\u0301\u0300\u0327"
        "\u0323\u0308\u05b0\u3099\u304b\u0dcf\u0dd9\u0cd5\u0cbf"
    ),
    st.characters(codec="utf-8"),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=_NFC_ALPHABET, max_size=12), min_size=1, max_size=20))
def test_normalize_nfc_matches_unicodedata(values: list[str]) -> None:
    out = normalize_nfc(pl.Series(values, dtype=pl.String)).to_list()
    assert out == [unicodedata.normalize("NFC", v) for v in values]


def test_characters_outside_the_suspects_are_nfc_and_never_compose() -> None:
    """Every code point outside `nfc_suspects()` is NFC alone and after any starter: the
    property the prefilter relies on, checked over all of Unicode."""
    suspects = pl.Series([chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF])
    plain = suspects.filter(~suspects.str.contains(nfc_suspects())).to_list()
    assert len(plain) > 1_000_000
    for c in plain:
        assert unicodedata.is_normalized("NFC", c), hex(ord(c))
        # after a starter that composes with many marks, a plain character stays itself
        for base in ("a", "\u1100", "\uac00", "\u0915"):
            assert unicodedata.is_normalized("NFC", base + c), (hex(ord(base)), hex(ord(c)))
