"""Synthetic Amazon-review source data, shaped like the contract tables, with planted defects.

The generator is a pure function of ``(n_reviews, seed, dirty_fraction)``: every value of every
row is computed from a counter-based hash of the row's global index (splitmix64), never from a
sequential random stream. That gives three properties the rest of the platform relies on:

* Chunks are independent: review ``i`` is the same whatever ``chunk_reviews`` is, so memory is
  bounded by the chunk and any row (e.g. the original of a duplicate) can be recomputed anywhere.
* Counts are known up front: which reviews are dirty, long, illustrated or bought is decided by
  the review's *rank* under a keyed pseudo-random permutation of ``0..n-1`` (a Feistel network
  with cycle walking), and each of those sets is a fixed interval of ranks. `plan` therefore
  returns the exact row counts with arithmetic only.
* Dirty rows are exact: each dirty review starts as a clean review and gets exactly one defect,
  so the cleaning layer can assert the counts in `GenerationReport.dirty`.

Identifiers are keyed bijections of the row index, so keys are unique by construction: review
``R`` + 13 and customer ``A`` + 13 base-36 characters, parent asin ``B0`` + 8 characters.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from amazon_reviews import contract

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)

DIRTY_KINDS = (
    "rating_out_of_range",
    "helpful_vote_negative",
    "created_at_in_future",
    "created_at_before_1995",
    "text_empty",
    "duplicate_content",
    "orphan_product",
    "orphan_customer",
    "price_negative",
    "orphan_review",
)
# The dirty kinds that are review rows; price_negative is a product row, orphan_review an image.
REVIEW_DIRTY_KINDS = DIRTY_KINDS[:8]
_DUP = REVIEW_DIRTY_KINDS.index("duplicate_content")

LONG_TEXT_CHARS = 10_000

# --------------------------------------------------------------------------------------------
# Time constants, in microseconds since the epoch.
_US = 1_000_000
_DAY = 86_400 * _US
_AS_OF_US = int(AS_OF.timestamp()) * _US
_END_US = _AS_OF_US - _DAY  # clean timestamps are never later than this
_Y1980_US = int(datetime(1980, 1, 1, tzinfo=UTC).timestamp()) * _US
_Y1995_US = int(datetime(1995, 1, 1, tzinfo=UTC).timestamp()) * _US
_Y2000_US = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * _US
_Y2015_US = int(datetime(2015, 1, 1, tzinfo=UTC).timestamp()) * _US
_Y2100_US = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * _US
_YEAR = 365 * _DAY

# --------------------------------------------------------------------------------------------
# Counter-based hashing.
_M64 = (1 << 64) - 1
_U64 = np.uint64


def _mix_int(x: int) -> int:
    """splitmix64 finaliser on a Python int (used to derive keys)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array: a bijection of the 64-bit integers."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


_M41 = (1 << 41) - 1


def _mix41(x: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of [0, 2**41): xor, odd multiplications and xorshifts, all mod 2**41."""
    m = _U64(_M41)
    x = (x ^ _U64(key & _M41)) & m
    x = (x * _U64(0x1D8E4E27C47D124F & _M41 | 1)) & m
    x = x ^ (x >> _U64(20))
    x = (x * _U64(0x2545F4914F6CDD1D & _M41 | 1)) & m
    return x ^ (x >> _U64(17))


class _Streams:
    """Independent uniform streams indexed by (stream, sub-stream) and a row counter."""

    def __init__(self, seed: int) -> None:
        self._seed = _mix_int(seed & _M64)
        self._keys: dict[tuple[int, int], np.uint64] = {}

    def key(self, stream: int, sub: int = 0) -> int:
        return _mix_int(self._seed ^ _mix_int(((stream << 24) + sub) * 0x632BE59BD9B4E019 & _M64))

    def bits(self, stream: int, counter: np.ndarray, sub: int = 0) -> np.ndarray:
        k = self._keys.get((stream, sub))
        if k is None:
            k = self._keys[(stream, sub)] = _U64(self.key(stream, sub))
        return _mix(counter.astype(_U64, copy=False) ^ k)

    def uniform(self, stream: int, counter: np.ndarray, sub: int = 0) -> np.ndarray:
        """Floats in [0, 1)."""
        bits = self.bits(stream, counter, sub)
        return (bits >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def below(self, stream: int, counter: np.ndarray, n: int, sub: int = 0) -> np.ndarray:
        """Integers in [0, n) as int64."""
        return np.minimum((self.uniform(stream, counter, sub) * n).astype(np.int64), n - 1)

    def normal(self, stream: int, counter: np.ndarray) -> np.ndarray:
        """Standard normal deviates (Box-Muller on two sub-streams)."""
        u1 = 1.0 - self.uniform(stream, counter, 1)  # (0, 1]
        u2 = self.uniform(stream, counter, 2)
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class _Permutation:
    """A keyed pseudo-random permutation of [0, n): 4-round Feistel plus cycle walking."""

    def __init__(self, n: int, streams: _Streams, stream: int) -> None:
        self.n = n
        bits = max(2, (max(n, 2) - 1).bit_length())
        bits += bits % 2
        self.half = _U64(bits // 2)
        self.mask = _U64((1 << (bits // 2)) - 1)
        self.keys = [_U64(streams.key(stream, r)) for r in range(4)]

    def _f(self, x: np.ndarray, k: np.uint64) -> np.ndarray:
        return _mix(x ^ k) & self.mask

    def _fwd(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ self._f(right, k)
        return (left << self.half) | right

    def _inv(self, y: np.ndarray) -> np.ndarray:
        left, right = y >> self.half, y & self.mask
        for k in reversed(self.keys):
            left, right = right ^ self._f(left, k), left
        return (left << self.half) | right

    def _walk(self, x: np.ndarray, step) -> np.ndarray:
        y = step(x.astype(_U64))
        out = np.nonzero(y >= _U64(self.n))[0]
        while out.size:
            y[out] = step(y[out])
            out = out[y[out] >= _U64(self.n)]
        return y.astype(np.int64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Rank of each index."""
        return self._walk(x, self._fwd)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Index holding each rank."""
        return self._walk(y, self._inv)


# Stream numbers: any distinct small integers (sub-streams are keyed separately).
# fmt: off
(
    _S_PERM, _S_CUST, _S_PROD, _S_VARIANT, _S_VARIANT_N, _S_RATING, _S_VOTE_ZERO, _S_VOTE,
    _S_CREATED, _S_EDITED, _S_EDIT_DELAY, _S_VERIFIED, _S_TITLE, _S_TITLE_EMOJI, _S_LEN,
    _S_HTML, _S_POOL, _S_SENTENCE, _S_SEP, _S_DIRTY, _S_DIRTY2, _S_PURCHASE, _S_QTY,
    _S_DISCOUNT, _S_IMAGE, _S_IDS, _S_P_CAT, _S_P_PATH, _S_P_BRAND, _S_P_ADJ, _S_P_NOUN,
    _S_P_SPEC, _S_P_PRICE, _S_P_AVG, _S_P_NRATING, _S_P_NFEAT, _S_P_FEAT, _S_P_DETAILS,
    _S_P_DIM, _S_P_DATE, _S_P_UPDATED, _S_C_CREATED, _S_C_UPDATED, _S_C_NAMEKIND, _S_C_FIRST,
    _S_C_LAST, _S_C_NUMBER, _S_C_COUNTRY,
) = range(1, 49)
# fmt: on

# --------------------------------------------------------------------------------------------
# Vocabulary (hand-written; the generated sentence table is built once at import).

# fmt: off
_NOUNS = (
    "charger", "blender", "water bottle", "phone case", "backpack", "lamp", "kettle", "headset",
    "keyboard", "jacket", "pillow", "shirt", "toy", "puzzle", "dog bed", "lipstick", "serum",
    "notebook", "drill", "cable", "speaker", "mug", "frying pan", "scarf", "necklace",
)
_PARTS = (
    "zipper", "handle", "lid", "strap", "battery", "button", "cord", "seam", "clasp", "screen",
    "finish", "stitching", "hinge", "switch", "fabric", "packaging", "manual", "plug",
)
_POS_ADJ = (
    "great", "excellent", "sturdy", "gorgeous", "comfortable", "perfect", "solid", "lovely",
    "reliable", "cute", "well made", "super soft", "easy to use", "really nice", "fantastic",
)
_NEG_ADJ = (
    "flimsy", "cheap", "broken", "useless", "awful", "disappointing", "scratched", "too small",
    "poorly made", "defective", "loose", "noisy", "sticky", "faded",
)
_NEUTRAL_ADJ = ("okay", "fine", "average", "a little stiff", "heavier than expected", "plain")
_PEOPLE = (
    "wife", "husband", "daughter", "son", "mom", "dad", "sister", "brother", "grandson",
    "best friend", "coworker", "kids",
)
_DURATIONS = (
    "two days", "a week", "two weeks", "a month", "three months", "six months", "a year",
    "a few uses", "one wash",
)
_COLORS = ("black", "white", "blue", "red", "gray", "green", "pink", "navy", "beige")
_ARRIVALS = ("early", "on time", "a day late", "a week late", "well packed", "in a crushed box")

_TEMPLATES_POS = (
    "I love this {noun}.",
    "The {part} feels {pos}.",
    "Great {noun} for the price.",
    "My {person} loves it 😍",
    "It&#39;s {pos} &amp; {pos2}.",
    "Exactly as described, {pos} quality.",
    "Would buy again 👍",
    "It’s {pos} and it arrived {arrival}.",
    "Highly recommend it to anyone who needs a {pos} {noun}.",
    "I&#39;ve used it for {duration} now with no issues.",
    "The {part} is &quot;{pos}&quot; just like the listing says.",
    "“{Pos}” is the only word for it.",
    "Bought a second one for my {person}.",
    "Five stars, the {part} is {pos}.",
    "Works better than my old {noun} 🙌",
    "I’m really happy with the {color} one.",
)
_TEMPLATES_NEG = (
    "The {part} broke after {duration}.",
    "Stopped working after {duration}.",
    "Not worth the money, the {part} is {neg}.",
    "It&#39;s {neg} and the {part} is {neg2}.",
    "Returned it because the {part} was {neg}.",
    "Very disappointed 😞",
    "Don’t buy this {noun}, it is {neg}.",
    "Nobody answered my question about the {part}.",
    "The listing said &quot;{pos}&quot; but it is {neg}.",
    "My {person} called it “{neg}” and I agree.",
    "The {color} one I got was {neg}.",
    "Arrived {arrival} and the {part} was {neg}.",
)
_TEMPLATES_NEUTRAL = (
    "It arrived {arrival}.",
    "I bought this for my {person}.",
    "The {part} is a bit {neutral}.",
    "Packaging was {neutral}.",
    "The color is slightly different from the photos.",
    "Sizing runs a little small, order one size up.",
    "I ordered the {color} one.",
    "It took {duration} to figure out the {part}.",
    "The price went up &amp; down a few times before I ordered.",
    "Overall it is {neutral} for a {noun}.",
    "Compared with my old {noun}, the {part} is {neutral}.",
    "Used it for {duration} so far.",
)

_TITLES_POS = (
    "Love it!", "Five stars", "Great value", "Exactly what I needed", "Highly recommend",
    "Perfect gift", "Works great", "So cute", "Better than expected", "Excellent quality",
    "Yummy", "My new favorite", "Does the job", "Happy customer", "Worth every penny",
)
_TITLES_NEG = (
    "Disappointed", "Broke quickly", "Do not buy", "Waste of money", "Returned it",
    "Cheaply made", "Not as described", "One star", "Stopped working", "Poor quality",
)
_TITLES_NEUTRAL = (
    "It's okay", "Average", "Decent for the price", "Three stars", "Mixed feelings",
    "Not bad", "Fine I guess", "Could be better",
)
_EMOJI = ("😍", "👍", "🙂", "😋", "❤️", "🔥", "😞", "🙌")

_CATEGORIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "All Beauty": (
        ("Beauty & Personal Care", "Skin Care", "Face", "Serums"),
        ("Beauty & Personal Care", "Makeup", "Lips", "Lipstick"),
    ),
    "Amazon Fashion": (
        ("Clothing, Shoes & Jewelry", "Women", "Clothing", "Tops, Tees & Blouses"),
        ("Clothing, Shoes & Jewelry", "Men", "Clothing", "Jackets & Coats"),
    ),
    "Electronics": (
        ("Electronics", "Computers & Accessories", "Keyboards"),
        ("Electronics", "Headphones, Earbuds & Accessories", "Headphones"),
        ("Electronics", "Portable Audio & Video", "Bluetooth Speakers"),
    ),
    "Home & Kitchen": (
        ("Home & Kitchen", "Kitchen & Dining", "Cookware", "Frying Pans"),
        ("Home & Kitchen", "Bedding", "Bed Pillows"),
    ),
    "Toys & Games": (
        ("Toys & Games", "Puzzles", "Jigsaw Puzzles"),
        ("Toys & Games", "Stuffed Animals & Plush Toys"),
    ),
    "Handmade": (
        ("Handmade Products", "Jewelry", "Necklaces"),
        ("Handmade Products", "Clothing, Shoes & Accessories", "Scarves"),
    ),
    "Pet Supplies": (("Pet Supplies", "Dogs", "Beds & Furniture", "Beds"),),
    "Tools & Home Improvement": (
        ("Tools & Home Improvement", "Power & Hand Tools", "Power Tools", "Drills"),
    ),
    "Cell Phones & Accessories": (
        ("Cell Phones & Accessories", "Cases, Holsters & Sleeves", "Basic Cases"),
        ("Cell Phones & Accessories", "Chargers & Power Adapters", "Wall Chargers"),
    ),
    "Sports & Outdoors": (
        ("Sports & Outdoors", "Outdoor Recreation", "Camping & Hiking", "Hydration"),
        ("Sports & Outdoors", "Exercise & Fitness", "Yoga"),
    ),
    "Office Products": (("Office Products", "Office & School Supplies", "Notebooks"),),
    "Grocery": (("Grocery & Gourmet Food", "Beverages", "Tea"),),
}
_CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "All Beauty": ("Vitamin C Serum", "Matte Lipstick", "Face Moisturizer", "Hair Oil"),
    "Amazon Fashion": ("Cotton T-Shirt", "Rain Jacket", "Knit Sweater", "Ankle Socks 6-Pack"),
    "Electronics": ("Wireless Keyboard", "Bluetooth Speaker", "Over-Ear Headphones", "USB-C Hub"),
    "Home & Kitchen": ("Nonstick Frying Pan", "Memory Foam Pillow", "Electric Kettle", "Mug Set"),
    "Toys & Games": ("1000 Piece Puzzle", "Plush Bunny", "Building Blocks Set", "Card Game"),
    "Handmade": ("Beaded Necklace", "Knitted Scarf", "Leather Keychain", "Ceramic Bowl"),
    "Pet Supplies": ("Orthopedic Dog Bed", "Cat Scratcher", "Chew Toy", "Pet Grooming Brush"),
    "Tools & Home Improvement": ("Cordless Drill", "Tape Measure", "LED Work Light", "Bit Set"),
    "Cell Phones & Accessories": ("Phone Case", "Fast Wall Charger", "USB-C Cable", "Car Mount"),
    "Sports & Outdoors": ("Insulated Water Bottle", "Yoga Mat", "Hiking Backpack", "Headlamp"),
    "Office Products": ("Spiral Notebook", "Gel Pens 12-Pack", "Desk Organizer", "Stapler"),
    "Grocery": ("Green Tea Bags", "Dark Roast Coffee", "Trail Mix", "Hot Sauce"),
}
_PRODUCT_ADJ = (
    "Premium", "Compact", "Classic", "Heavy Duty", "Lightweight", "Eco-Friendly", "Deluxe",
    "Portable", "Vintage", "Ultra Soft", "Pro", "Mini",
)
_SPECS = (
    "", "", "", ", Black", ", 2 Pack", ", Large", " for Women", " for Men", " for Kids",
    " (Blue)", ", Gift Box Included", " - Set of 3",
)
_FEATURES = (
    "High quality materials", "Easy to clean", "Lightweight and portable", "Dishwasher safe",
    'Approx. 5-1/2" wide', "BPA free", "1 year warranty", "Handmade in California",
    "Fits most standard sizes", "Gift ready packaging", "Rechargeable battery lasts 20 hours",
    "Machine washable", "Non-slip base", "Compatible with USB-C devices",
    "Made from recycled plastic", "Hypoallergenic",
)
_SYLLABLES_1 = ("Zen", "Kal", "Nor", "Vel", "Bri", "Lum", "Ori", "Tas", "Mar", "Quin", "Hal")
_SYLLABLES_2 = ("to", "ra", "vi", "mo", "ne", "li", "sa", "ko", "da", "")
_SYLLABLES_3 = ("va", "x", "ly", "co", "tech", "home", "ify", "go", "n", "ria")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_FIRST_NAMES = (
    "Mary", "James", "Linda", "Robert", "Patricia", "Michael", "Jennifer", "David", "Maria",
    "Carlos", "Aisha", "Wei", "Priya", "Olga", "Kenji", "Fatima", "Liam", "Emma", "Noah", "Zoë",
)
_LAST_INITIALS = tuple("ABCDEFGHJKLMNOPRSTW")
_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "IN", "JP", "MX", "ES", "IT", "BR", "AU")
_COUNTRY_WEIGHTS = (0.62, 0.06, 0.07, 0.06, 0.03, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01, 0.01)
# fmt: on

_RATING_CDF = np.array([0.10, 0.15, 0.23, 0.40, 1.0])  # P(1)=.10 P(2)=.05 P(3)=.08 P(4)=.17


def _capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def _fill(templates: tuple[str, ...], rnd: random.Random, per_template: int) -> list[str]:
    out: set[str] = set()
    for tpl in templates:
        for _ in range(per_template):
            pos, pos2 = rnd.sample(_POS_ADJ, 2)
            neg, neg2 = rnd.sample(_NEG_ADJ, 2)
            out.add(
                tpl.format(
                    noun=rnd.choice(_NOUNS),
                    part=rnd.choice(_PARTS),
                    pos=pos,
                    pos2=pos2,
                    Pos=_capitalize(pos),
                    neg=neg,
                    neg2=neg2,
                    neutral=rnd.choice(_NEUTRAL_ADJ),
                    person=rnd.choice(_PEOPLE),
                    duration=rnd.choice(_DURATIONS),
                    color=rnd.choice(_COLORS),
                    arrival=rnd.choice(_ARRIVALS),
                )
            )
    return sorted(out)


def _build_sentences() -> tuple[pl.Series, np.ndarray, np.ndarray, int, float]:
    """Sentence pools (negative, neutral, positive) and the token table sentence x separator."""
    rnd = random.Random(20260101)
    pools = [
        _fill(_TEMPLATES_NEG, rnd, 60),
        _fill(_TEMPLATES_NEUTRAL, rnd, 60),
        _fill(_TEMPLATES_POS, rnd, 60),
    ]
    sentences = [s for p in pools for s in p]
    assert all(len(s.replace(" ", "")) >= 7 for s in sentences)
    sizes = np.array([len(p) for p in pools], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tokens = [s + sep for s in sentences for sep in _SEPARATORS]
    max_token = max(len(t) for t in tokens)
    mean_len = float(np.mean([len(s) + 1 for s in sentences]))
    return pl.Series("tok", tokens, dtype=pl.String), offsets, sizes, max_token, mean_len


_SEPARATORS = (" ", "<br /><br />", "")
_TOKENS, _POOL_OFFSETS, _POOL_SIZES, _MAX_TOKEN_CHARS, _MEAN_SENTENCE_CHARS = _build_sentences()
_REF_CHARS = len(" (ref XXXXXXXX)")
# Normal texts are capped so that even the worst case stays under the long-text threshold.
_MAX_NORMAL_SENTENCES = (LONG_TEXT_CHARS - 200 - _REF_CHARS) // _MAX_TOKEN_CHARS
_LONG_MIN_CHARS = 12_000
_LONG_MAX_CHARS = 30_000

_TITLE_POOLS = (_TITLES_NEG, _TITLES_NEUTRAL, _TITLES_POS)
_TITLES = pl.Series("title", [t for p in _TITLE_POOLS for t in p], dtype=pl.String)
_TITLE_SIZES = np.array([len(p) for p in _TITLE_POOLS], dtype=np.int64)
_TITLE_OFFSETS = np.concatenate([[0], np.cumsum(_TITLE_SIZES)[:-1]])

_CAT_NAMES = tuple(_CATEGORIES)
# One JSON array per (category, path) plus a final empty array.
_CAT_PATHS_JSON = pl.Series(
    [json.dumps(list(p), ensure_ascii=False) for c in _CAT_NAMES for p in _CATEGORIES[c]] + ["[]"]
)
_CAT_PATH_OFFSETS = np.cumsum([0] + [len(_CATEGORIES[c]) for c in _CAT_NAMES])
_CAT_NOUN_TABLE = pl.Series([n for c in _CAT_NAMES for n in _CATEGORY_NOUNS[c]])
_CAT_NOUN_COUNT = 4
assert all(len(_CATEGORY_NOUNS[c]) == _CAT_NOUN_COUNT for c in _CAT_NAMES)
_FEATURES_JSON = pl.Series([json.dumps(f) for f in _FEATURES])
assert len(_FEATURES) == 16  # a power of two: odd steps visit distinct features
_BRANDS = pl.Series(
    sorted(
        {_capitalize(a + b + c) for a in _SYLLABLES_1 for b in _SYLLABLES_2 for c in _SYLLABLES_3}
    )
)
assert all(b.isalpha() for b in _BRANDS.to_list())  # safe to splice into JSON unescaped

# --------------------------------------------------------------------------------------------
# Identifier encoding.
_B36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_B62 = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8
)


def _encode(values: np.ndarray, width: int, prefix: bytes, alphabet: np.ndarray) -> pl.Series:
    """Fixed-width base-N strings (most significant digit first) with a constant prefix."""
    n = values.shape[0]
    p = len(prefix)
    out = np.empty((n, p + width), dtype=np.uint8)
    if p:
        out[:, :p] = np.frombuffer(prefix, dtype=np.uint8)
    x = values.astype(_U64, copy=True)
    base = _U64(alphabet.shape[0])
    for j in range(p + width - 1, p - 1, -1):
        out[:, j] = alphabet[(x % base).astype(np.intp)]
        x //= base
    if n == 0:
        return pl.Series([], dtype=pl.String)
    return pl.Series(out.view(f"S{p + width}").ravel()).cast(pl.String)


# --------------------------------------------------------------------------------------------
# Layout: every count is arithmetic on (n_reviews, dirty_fraction).


def _count_mod(n: int, modulus: int, below: int) -> int:
    """How many q in [0, n) have q % modulus < below."""
    return (n // modulus) * below + min(n % modulus, below)


_VERIFIED_MOD, _VERIFIED_BELOW, _BUYER_BELOW = 200, 170, 153  # 85% verified, 90% of them bought


@dataclass(frozen=True)
class _Layout:
    n: int
    products: int
    products_valid: int
    customers: int
    kind_counts: tuple[int, ...]  # per REVIEW_DIRTY_KINDS
    kind_starts: tuple[int, ...]
    dirty: int
    clean: int
    dups: int
    long: int
    img_counts: tuple[int, int, int]  # reviews with 1, 2, 3 images
    orphan_images: int
    price_negative: int

    @classmethod
    def of(cls, n: int, dirty_fraction: float) -> _Layout:
        if n < 0:
            raise ValueError(f"n_reviews must be >= 0, got {n}")
        if not 0.0 <= dirty_fraction <= 0.5:
            raise ValueError(f"dirty_fraction must be in [0, 0.5], got {dirty_fraction}")
        big = n >= 1000 and dirty_fraction > 0
        products = max(4, round(n / 8))
        customers = max(4, round(n / 4))
        price_negative = round(0.005 * products)
        if big:
            price_negative = max(1, price_negative)
        dirty = min(n, round(dirty_fraction * n))
        if big:
            dirty = max(dirty, len(REVIEW_DIRTY_KINDS))
        k = len(REVIEW_DIRTY_KINDS)
        counts = [dirty // k + (1 if i < dirty % k else 0) for i in range(k)]
        clean = n - dirty
        if counts[_DUP] > clean:  # only reachable for tiny n: the excess becomes bad ratings
            counts[0] += counts[_DUP] - clean
            counts[_DUP] = clean
        starts = tuple(int(s) for s in np.concatenate([[0], np.cumsum(counts)[:-1]]))
        dups = counts[_DUP]
        long = round(0.001 * clean)
        if n >= 1000:
            long = max(long, 1)
        long = min(long, clean - dups)
        img = min(round(0.03 * clean), clean - dups - long)
        img1 = round(0.6 * img)
        img2 = round(0.25 * img)
        orphan_images = max(1, round(n / 20_000)) if big else 0
        return cls(
            n=n,
            products=products,
            products_valid=products - price_negative,
            customers=customers,
            kind_counts=tuple(counts),
            kind_starts=starts,
            dirty=dirty,
            clean=clean,
            dups=dups,
            long=long,
            img_counts=(img1, img2, img - img1 - img2),
            orphan_images=orphan_images,
            price_negative=price_negative,
        )

    @property
    def image_start(self) -> int:
        return self.dups + self.long

    @property
    def buyers(self) -> int:
        return _count_mod(self.clean, _VERIFIED_MOD, _BUYER_BELOW)

    @property
    def images(self) -> int:
        a, b, c = self.img_counts
        return a + 2 * b + 3 * c + self.orphan_images

    def report(self) -> GenerationReport:
        dirty = dict(zip(REVIEW_DIRTY_KINDS, self.kind_counts, strict=True))
        dirty["price_negative"] = self.price_negative
        dirty["orphan_review"] = self.orphan_images
        return GenerationReport(
            reviews=self.n,
            products=self.products,
            customers=self.customers,
            buyers=self.buyers,
            images=self.images,
            dirty={k: dirty[k] for k in DIRTY_KINDS},
            long_texts=self.long,
        )


@dataclass
class GenerationReport:
    """Row counts of one generation run.

    Attributes:
        reviews: Review rows, dirty ones included.
        products: Product rows, the price_negative ones included.
        customers: Customer rows.
        buyers: Buyer rows.
        images: review_images rows, the orphan_review ones included.
        dirty: For each of `DIRTY_KINDS`, the exact number of rows carrying that single defect.
        long_texts: Clean reviews whose text is longer than 10,000 characters after HTML cleanup.
    """

    reviews: int
    products: int
    customers: int
    buyers: int
    images: int
    dirty: dict[str, int] = field(default_factory=dict)
    long_texts: int = 0

    def as_dict(self) -> dict:
        """Return the report as a plain, JSON-serialisable dict."""
        return asdict(self)


def plan(n_reviews: int, *, seed: int = 42, dirty_fraction: float = 0.01) -> GenerationReport:
    """Return the exact row counts `generate` would produce, without generating anything.

    Args:
        n_reviews: Number of review rows, dirty rows included.
        seed: Random seed. Counts do not depend on it; accepted for symmetry with `generate`.
        dirty_fraction: Share of reviews that carry exactly one defect (0 to 0.5).

    Returns:
        The counts per table, per dirty kind and of long texts.

    Raises:
        ValueError: If `n_reviews` is negative or `dirty_fraction` is out of range.
    """
    del seed
    return _Layout.of(n_reviews, dirty_fraction).report()


# --------------------------------------------------------------------------------------------
# Row generation.


class _Generator:
    def __init__(self, n: int, seed: int, dirty_fraction: float) -> None:
        self.lay = _Layout.of(n, dirty_fraction)
        self.s = _Streams(seed)
        self.perm = _Permutation(n, self.s, _S_PERM)
        self.k_review = self.s.key(_S_IDS, 1)
        self.k_customer = self.s.key(_S_IDS, 2)
        self.k_asin = self.s.key(_S_IDS, 3)
        self.k_ref = self.s.key(_S_IDS, 4)

    # -- identifiers ---------------------------------------------------------------------------
    def review_ids(self, idx: np.ndarray) -> pl.Series:
        return _encode(_mix(idx.astype(_U64) ^ _U64(self.k_review)), 13, b"R", _B36)

    def customer_ids(self, cust: np.ndarray) -> pl.Series:
        return _encode(_mix(cust.astype(_U64) ^ _U64(self.k_customer)), 13, b"A", _B36)

    def asins(self, prod: np.ndarray, variant: np.ndarray | None = None) -> pl.Series:
        code = prod.astype(_U64) * _U64(4)
        if variant is not None:
            code = code + variant.astype(_U64)
        return _encode(_mix41(code, self.k_asin), 8, b"B0", _B36)

    # -- shared per-entity attributes -----------------------------------------------------------
    def customer_created(self, cust: np.ndarray) -> np.ndarray:
        frac = np.sqrt(self.s.uniform(_S_C_CREATED, cust))  # more customers joined recently
        return _Y2000_US + (frac * (_END_US - 2 * _DAY - _Y2000_US)).astype(np.int64)

    def price_cents(self, prod: np.ndarray) -> np.ndarray:
        z = self.s.normal(_S_P_PRICE, prod)
        cents = np.round(np.clip(np.exp(np.log(25.0) + 0.9 * z), 1.0, 500.0) * 100).astype(np.int64)
        negative = prod >= self.lay.products_valid
        if negative.any():
            cents[negative] = -(100 + self.s.below(_S_P_PRICE, prod[negative], 9_900, sub=7))
        return cents

    # -- reviews -------------------------------------------------------------------------------
    def review_core(self, idx: np.ndarray, rank: np.ndarray) -> dict[str, np.ndarray]:
        """Clean values of the reviews `idx` whose ranks are `rank` (dirty ones fixed later)."""
        s, lay = self.s, self.lay
        cust = np.minimum(
            (lay.customers * s.uniform(_S_CUST, idx) ** 1.3).astype(np.int64), lay.customers - 1
        )
        prod = np.minimum(
            (lay.products_valid * s.uniform(_S_PROD, idx) ** 2.0).astype(np.int64),
            lay.products_valid - 1,
        )
        variant = np.where(
            s.uniform(_S_VARIANT, idx) < 0.2, 1 + s.below(_S_VARIANT_N, idx, 3), 0
        ).astype(np.int64)
        rating = 1 + np.searchsorted(_RATING_CDF, s.uniform(_S_RATING, idx), side="right")
        u_vote = s.uniform(_S_VOTE, idx)
        votes = np.where(
            s.uniform(_S_VOTE_ZERO, idx) < 0.65,
            0,
            np.minimum(1 + np.floor(0.8 * ((1.0 - u_vote) ** (-1 / 1.3) - 1.0)), 20_000),
        ).astype(np.int64)
        joined = self.customer_created(cust)
        span = _END_US - joined - 60 * _US
        created = joined + 60 * _US + (s.uniform(_S_CREATED, idx) * span).astype(np.int64)
        delay = np.exp(np.log(3 * 3600.0) + 2.0 * s.normal(_S_EDIT_DELAY, idx)) * _US
        edited = s.uniform(_S_EDITED, idx) < 0.25
        updated = np.where(
            edited, np.minimum(created + delay.astype(np.int64), _END_US), created
        ).astype(np.int64)
        q = rank - lay.dirty
        clean = q >= 0
        verified = np.where(
            clean, q % _VERIFIED_MOD < _VERIFIED_BELOW, s.uniform(_S_VERIFIED, idx) < 0.85
        )
        is_long = clean & (q >= lay.dups) & (q < lay.dups + lay.long)
        html = s.uniform(_S_HTML, idx) < 0.15
        return {
            "idx": idx,
            "cust": cust,
            "prod": prod,
            "variant": variant,
            "rating": rating.astype(np.int64),
            "votes": votes,
            "created": created,
            "updated": updated,
            "verified": verified,
            "is_long": is_long,
            "html": html & ~is_long,
        }

    def texts(self, core: dict[str, np.ndarray]) -> pl.Series:
        """Review texts: sentences from a sentiment pool, a unique reference at the end."""
        s = self.s
        idx = core["idx"]
        m = idx.shape[0]
        if m == 0:
            return pl.Series("text", [], dtype=pl.String)
        is_long = core["is_long"]
        target = np.exp(np.log(200.0) + 0.85 * s.normal(_S_LEN, idx))
        k = np.clip(
            np.round((target - _REF_CHARS) / _MEAN_SENTENCE_CHARS), 1, _MAX_NORMAL_SENTENCES
        )
        long_target = _LONG_MIN_CHARS + s.uniform(_S_LEN, idx, 7) * (
            _LONG_MAX_CHARS - _LONG_MIN_CHARS - 1_000
        )
        k = np.where(is_long, np.ceil(long_target / _MEAN_SENTENCE_CHARS), k).astype(np.int64)
        total = int(k.sum())
        row = np.repeat(np.arange(m, dtype=np.int64), k)
        starts = np.cumsum(k) - k
        pos = np.arange(total, dtype=np.int64) - np.repeat(starts, k)
        counter = (np.repeat(idx, k).astype(_U64) << _U64(16)) | pos.astype(_U64)
        rating = core["rating"]
        sentiment = np.where(rating <= 2, 0, np.where(rating == 3, 1, 2))[row]
        pool = np.where(s.uniform(_S_POOL, counter) < 0.35, 1, sentiment)
        sentence = _POOL_OFFSETS[pool] + (
            s.uniform(_S_SENTENCE, counter) * _POOL_SIZES[pool]
        ).astype(np.int64)
        last = pos == np.repeat(k - 1, k)
        br = core["html"][row] & (s.uniform(_S_SEP, counter) < 0.5)
        sep = np.where(last, 2, np.where(br, 1, 0))
        tokens = _TOKENS.gather(sentence * len(_SEPARATORS) + sep)
        body = (
            pl.DataFrame({"row": row, "tok": tokens})
            .with_columns(pl.col("row").set_sorted())
            .group_by("row", maintain_order=True)
            .agg(pl.col("tok").str.join(""))
            .get_column("tok")
        )
        ref = _encode(_mix41(idx.astype(_U64), self.k_ref), 8, b"", _B36)
        frame = pl.DataFrame({"body": body, "ref": ref, "long": is_long})
        return frame.select(
            pl.concat_str(
                pl.when(pl.col("long") & (pl.col("body").str.len_chars() < _LONG_MIN_CHARS))
                .then(pl.concat_str(pl.col("body"), pl.lit(" "), pl.col("body")))
                .otherwise(pl.col("body")),
                pl.lit(" (ref "),
                pl.col("ref"),
                pl.lit(")"),
            ).alias("text")
        ).to_series()

    def titles(self, core: dict[str, np.ndarray]) -> pl.Series:
        s, idx, rating = self.s, core["idx"], core["rating"]
        sentiment = np.where(rating <= 2, 0, np.where(rating == 3, 1, 2))
        pick = _TITLE_OFFSETS[sentiment] + (
            s.uniform(_S_TITLE, idx) * _TITLE_SIZES[sentiment]
        ).astype(np.int64)
        u = s.uniform(_S_TITLE_EMOJI, idx)
        emoji = pl.Series(_EMOJI).gather(np.minimum((u * 100).astype(np.int64), len(_EMOJI) - 1))
        return (
            pl.DataFrame({"t": _TITLES.gather(pick), "e": emoji, "has": u < 0.06})
            .select(
                pl.when(pl.col("has"))
                .then(pl.concat_str(pl.col("t"), pl.lit(" "), pl.col("e")))
                .otherwise(pl.col("t"))
                .alias("title")
            )
            .to_series()
        )

    def reviews(self, start: int, stop: int) -> dict[str, pl.DataFrame]:
        """Review, buyer and review_images rows of reviews [start, stop)."""
        s, lay = self.s, self.lay
        idx = np.arange(start, stop, dtype=np.int64)
        rank = self.perm.forward(idx) if idx.size else idx.copy()
        kind = np.full(idx.shape, -1, dtype=np.int64)
        dirty = rank < lay.dirty
        kind[dirty] = np.searchsorted(np.array(lay.kind_starts), rank[dirty], side="right") - 1
        # searchsorted(right) - 1 picks the last kind starting at or before the rank, which is
        # never an empty kind (an empty kind shares its start with the next one).
        within = np.zeros(idx.shape, dtype=np.int64)
        within[dirty] = rank[dirty] - np.array(lay.kind_starts, dtype=np.int64)[kind[dirty]]
        # Sources: a duplicate copies the clean review holding rank dirty + k.
        src_idx, src_rank = idx.copy(), rank.copy()
        dup = kind == _DUP
        if dup.any():
            src_rank[dup] = lay.dirty + within[dup]
            src_idx[dup] = self.perm.inverse(src_rank[dup])
        core = self.review_core(src_idx, src_rank)
        text = self.texts(core)
        title = self.titles(core)
        cust, prod, variant = core["cust"], core["prod"], core["variant"]
        rating10 = core["rating"] * 10
        votes, created, updated = core["votes"], core["created"], core["updated"]

        def sel(name: str) -> np.ndarray:
            return kind == REVIEW_DIRTY_KINDS.index(name)

        u = s.uniform(_S_DIRTY, idx)
        if dup.any():
            bump = 1 + (u[dup] * (86_399 * _US)).astype(np.int64)
            updated[dup] = updated[dup] + bump
            votes[dup] = (s.uniform(_S_DIRTY2, idx[dup]) * 4).astype(np.int64)
        m = sel("rating_out_of_range")
        rating10[m] = np.array([0, 70, 45])[within[m] % 3]
        m = sel("helpful_vote_negative")
        votes[m] = -(1 + (u[m] * 20).astype(np.int64))
        m = sel("created_at_in_future")
        created[m] = _Y2100_US + (u[m] * 50 * _YEAR).astype(np.int64)
        updated[m] = created[m] + (s.uniform(_S_DIRTY2, idx[m]) * 30 * _DAY).astype(np.int64)
        m = sel("created_at_before_1995")
        created[m] = _Y1980_US + (u[m] * (_Y1995_US - _Y1980_US - _DAY)).astype(np.int64)
        updated[m] = created[m]
        m = sel("orphan_product")
        prod = prod.copy()
        prod[m] = lay.products + within[m]  # beyond every product index
        m = sel("orphan_customer")
        cust = cust.copy()
        cust[m] = lay.customers + within[m]  # beyond every customer index
        m = sel("text_empty")
        if m.any():
            empties = pl.Series([None, "", "   ", "\n\t "], dtype=pl.String)
            text = text.scatter(np.nonzero(m)[0], empties.gather(within[m] % 4))

        parent = self.asins(prod)
        asin = self.asins(prod, variant)
        customer_id = self.customer_ids(cust)
        review = pl.DataFrame(
            {
                "review_id": self.review_ids(idx),
                "customer_id": customer_id,
                "asin": asin,
                "parent_asin": parent,
                "rating": _decimal(rating10, 3, 1),
                "title": title,
                "text": text,
                "helpful_vote": pl.Series(votes, dtype=pl.Int32),
                "verified_purchase": pl.Series(core["verified"], dtype=pl.Boolean),
                "created_at": _timestamps(created),
                "updated_at": _timestamps(updated),
            }
        )

        # Buyers: clean reviews on the buyer residues of their rank.
        q = rank - lay.dirty
        bought = np.nonzero((q >= 0) & (q % _VERIFIED_MOD < _BUYER_BELOW))[0]
        b_idx = idx[bought]
        joined = self.customer_created(cust[bought])
        room = created[bought] - joined
        lead = np.exp(np.log(4 * _DAY) + 1.0 * s.normal(_S_PURCHASE, b_idx))
        lead = np.maximum(np.minimum(lead, room / 2), _US).astype(np.int64)
        qty = 1 + np.searchsorted([0.85, 0.96], s.uniform(_S_QTY, b_idx), side="right")
        discount = 0.7 + 0.3 * s.uniform(_S_DISCOUNT, b_idx)
        unit = np.maximum(np.round(self.price_cents(prod[bought]) * discount), 1).astype(np.int64)
        buyer = pl.DataFrame(
            {
                "buyer_id": pl.Series(b_idx + 1, dtype=pl.Int64),
                "customer_id": customer_id.gather(bought),
                "asin": asin.gather(bought),
                "parent_asin": parent.gather(bought),
                "purchased_at": _timestamps(created[bought] - lead),
                "quantity": pl.Series(qty, dtype=pl.Int32),
                "unit_price": _decimal(unit, 10, 2),
            }
        )

        # Images: clean reviews in the three image rank segments.
        a = lay.image_start
        n1, n2, n3 = lay.img_counts
        n_img = np.zeros(idx.shape, dtype=np.int64)
        n_img[(q >= a) & (q < a + n1)] = 1
        n_img[(q >= a + n1) & (q < a + n1 + n2)] = 2
        n_img[(q >= a + n1 + n2) & (q < a + n1 + n2 + n3)] = 3
        has = np.nonzero(n_img)[0]
        images = self.images(idx[has], n_img[has], self.review_ids(idx[has]))
        return {"review": review, "buyer": buyer, "review_images": images}

    def images(self, idx: np.ndarray, k: np.ndarray, review_ids: pl.Series) -> pl.DataFrame:
        total = int(k.sum())
        row = np.repeat(np.arange(idx.shape[0], dtype=np.int64), k)
        ordinal = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(k) - k, k)
        code = _encode(self.s.bits(_S_IMAGE, (np.repeat(idx, k) << 2) | ordinal), 11, b"", _B62)
        base = "https://m.media-amazon.com/images/I/"
        frame = pl.DataFrame(
            {
                "review_id": review_ids.gather(row),
                "ordinal": pl.Series(ordinal, dtype=pl.Int32),
                "code": code,
            }
        )
        return frame.select(
            "review_id",
            "ordinal",
            *(
                pl.concat_str(pl.lit(base), pl.col("code"), pl.lit(f"._SL{px}_.jpg")).alias(name)
                for name, px in (
                    ("small_image_url", 256),
                    ("medium_image_url", 800),
                    ("large_image_url", 1600),
                )
            ),
            pl.lit("IMAGE", dtype=pl.String).alias("attachment_type"),
        )

    def orphan_images(self) -> pl.DataFrame:
        """review_images rows whose review ids belong to no review (indices >= n)."""
        j = np.arange(self.lay.orphan_images, dtype=np.int64)
        fake = self.lay.n + j
        k = np.ones_like(fake)
        return self.images(fake, k, self.review_ids(fake))

    # -- products and customers ---------------------------------------------------------------
    def products(self, start: int, stop: int) -> pl.DataFrame:
        s = self.s
        p = np.arange(start, stop, dtype=np.int64)
        cat = s.below(_S_P_CAT, p, len(_CAT_NAMES))
        n_paths = np.diff(_CAT_PATH_OFFSETS)[cat]
        path = _CAT_PATH_OFFSETS[cat] + (s.uniform(_S_P_PATH, p) * n_paths).astype(np.int64)
        path = np.where(s.uniform(_S_P_PATH, p, 1) < 0.05, len(_CAT_PATHS_JSON) - 1, path)
        brand = _BRANDS.gather(s.below(_S_P_BRAND, p, len(_BRANDS)))
        noun = _CAT_NOUN_TABLE.gather(cat * _CAT_NOUN_COUNT + s.below(_S_P_NOUN, p, 4))
        adj = pl.Series(_PRODUCT_ADJ).gather(s.below(_S_P_ADJ, p, len(_PRODUCT_ADJ)))
        spec = pl.Series(_SPECS).gather(s.below(_S_P_SPEC, p, len(_SPECS)))
        avg = np.clip(np.round(43 + 4 * s.normal(_S_P_AVG, p)), 10, 50).astype(np.int64)
        n_ratings = np.floor(np.exp(3.0 + 1.6 * s.normal(_S_P_NRATING, p))).astype(np.int64)
        n_feat = s.below(_S_P_NFEAT, p, 6)
        # Distinct features: base + j * odd step, modulo the (power of two) feature count.
        base, step = s.below(_S_P_FEAT, p, len(_FEATURES)), 2 * s.below(_S_P_FEAT, p, 8, sub=1) + 1
        feats = [_FEATURES_JSON.gather((base + j * step) % len(_FEATURES)) for j in range(5)]
        dims = [s.below(_S_P_DIM, p, 30, sub=j) + 1 for j in range(3)]
        ounces = s.below(_S_P_DIM, p, 400, sub=5) + 1
        month = pl.Series(_MONTHS).gather(s.below(_S_P_DATE, p, 12))
        day = s.below(_S_P_DATE, p, 28, sub=1) + 1
        year = s.below(_S_P_DATE, p, 20, sub=2) + 2005
        details_kind = s.below(_S_P_DETAILS, p, 10)  # 0: {}, 1-3: date only, else full
        updated = _Y2015_US + (s.uniform(_S_P_UPDATED, p) * (_END_US - _Y2015_US)).astype(np.int64)
        frame = pl.DataFrame(
            {
                "parent_asin": self.asins(p),
                "cat": pl.Series(_CAT_NAMES).gather(cat),
                "brand": brand,
                "adj": adj,
                "noun": noun,
                "spec": spec,
                "price": _decimal(self.price_cents(p), 10, 2),
                "average_rating": _decimal(avg, 2, 1),
                "rating_number": pl.Series(np.minimum(n_ratings, 2_000_000), dtype=pl.Int32),
                "categories": _CAT_PATHS_JSON.gather(path),
                "n_feat": n_feat,
                **{f"f{j}": f for j, f in enumerate(feats)},
                **{f"d{j}": d for j, d in enumerate(dims)},
                "oz": ounces,
                "month": month,
                "day": day,
                "year": year,
                "dk": details_kind,
                "updated_at": _timestamps(updated),
            }
        )
        lit = pl.lit
        date = pl.concat_str(
            lit('"Date First Available": "'), "month", lit(" "), "day", lit(", "), "year", lit('"')
        )
        full = pl.concat_str(
            lit('{"Package Dimensions": "'),
            *("d0", lit(" x "), "d1", lit(" x "), "d2", lit(" inches; "), "oz", lit(' Ounces", ')),
            *(date, lit(', "Manufacturer": "'), "brand", lit('"}')),
        )
        return frame.select(
            "parent_asin",
            pl.concat_str("brand", pl.lit(" "), "adj", pl.lit(" "), "noun", "spec").alias("title"),
            pl.col("cat").alias("main_category"),
            pl.col("brand").alias("store"),
            "price",
            "average_rating",
            "rating_number",
            "categories",
            pl.concat_str(
                pl.lit("["),
                pl.concat_list([f"f{j}" for j in range(5)])
                .list.head(pl.col("n_feat"))
                .list.join(", "),
                pl.lit("]"),
            ).alias("features"),
            pl.when(pl.col("dk") == 0)
            .then(pl.lit("{}"))
            .when(pl.col("dk") <= 3)
            .then(pl.concat_str(pl.lit("{"), date, pl.lit("}")))
            .otherwise(full)
            .alias("details"),
            "updated_at",
        )

    def customers(self, start: int, stop: int) -> pl.DataFrame:
        s = self.s
        c = np.arange(start, stop, dtype=np.int64)
        created = self.customer_created(c)
        updated = created + (s.uniform(_S_C_UPDATED, c) * (_END_US - created)).astype(np.int64)
        updated = np.where(s.uniform(_S_C_UPDATED, c, 1) < 0.5, created, updated)
        first = pl.Series(_FIRST_NAMES).gather(s.below(_S_C_FIRST, c, len(_FIRST_NAMES)))
        last = pl.Series(_LAST_INITIALS).gather(s.below(_S_C_LAST, c, len(_LAST_INITIALS)))
        country = np.searchsorted(
            np.cumsum(_COUNTRY_WEIGHTS) / sum(_COUNTRY_WEIGHTS),
            s.uniform(_S_C_COUNTRY, c),
            side="right",
        )
        frame = pl.DataFrame(
            {
                "customer_id": self.customer_ids(c),
                "first": first,
                "last": last,
                "num": s.below(_S_C_NUMBER, c, 999) + 1,
                "kind": s.below(_S_C_NAMEKIND, c, 20),
                "country": pl.Series(_COUNTRIES).gather(np.minimum(country, len(_COUNTRIES) - 1)),
                "created_at": _timestamps(created),
                "updated_at": _timestamps(updated),
            }
        )
        return frame.select(
            "customer_id",
            pl.when(pl.col("kind") < 5)
            .then(pl.lit("Amazon Customer"))
            .when(pl.col("kind") < 9)
            .then(pl.col("first"))
            .when(pl.col("kind") < 16)
            .then(pl.concat_str("first", pl.lit(" "), "last", pl.lit(".")))
            .otherwise(pl.concat_str(pl.col("first").str.to_lowercase(), pl.col("num")))
            .alias("display_name"),
            "country",
            "created_at",
            "updated_at",
        )


def _decimal(scaled: np.ndarray, precision: int, scale: int) -> pl.Series:
    """Decimal(precision, scale) from integers holding value * 10**scale (exact)."""
    series = pl.Series(np.asarray(scaled, dtype=np.int64), dtype=pl.Int64)
    return (series.cast(pl.Decimal(38, scale)) / 10**scale).cast(pl.Decimal(precision, scale))


def _timestamps(us: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(us, dtype=np.int64), dtype=pl.Int64).cast(contract.UTC_TS)


def _conform(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    schema = contract.TABLES[name].polars_schema
    return frame.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])


def generate(
    n_reviews: int,
    *,
    seed: int = 42,
    chunk_reviews: int = 100_000,
    dirty_fraction: float = 0.01,
) -> Iterator[dict[str, pl.DataFrame]]:
    """Generate the five source tables in chunks of at most `chunk_reviews` reviews.

    Each yielded chunk maps every contract table name to a frame whose schema is exactly
    ``contract.TABLES[name].polars_schema`` (possibly empty). Products and customers are spread
    evenly over the chunks; every key is unique across all chunks. Output is a pure function of
    ``(n_reviews, seed, dirty_fraction, chunk_reviews)``; review, buyer and image rows do not
    even depend on `chunk_reviews`. Exact counts are those of `plan`.

    Args:
        n_reviews: Number of review rows, dirty rows included.
        seed: Random seed.
        chunk_reviews: Maximum number of reviews per chunk; bounds memory use.
        dirty_fraction: Share of reviews that carry exactly one defect (0 to 0.5).

    Yields:
        Dicts table name -> `pl.DataFrame`, at least one chunk even when `n_reviews` is 0.

    Raises:
        ValueError: If an argument is out of range.
    """
    if chunk_reviews < 1:
        raise ValueError(f"chunk_reviews must be >= 1, got {chunk_reviews}")
    gen = _Generator(n_reviews, seed, dirty_fraction)
    lay = gen.lay
    n_chunks = max(1, -(-n_reviews // chunk_reviews))
    for c in range(n_chunks):
        start, stop = c * chunk_reviews, min(n_reviews, (c + 1) * chunk_reviews)
        parts = gen.reviews(start, stop)
        if c == n_chunks - 1 and lay.orphan_images:
            parts["review_images"] = pl.concat(
                [
                    _conform(parts["review_images"], "review_images"),
                    _conform(gen.orphan_images(), "review_images"),
                ]
            )
        parts["product"] = gen.products(
            c * lay.products // n_chunks, (c + 1) * lay.products // n_chunks
        )
        parts["customer"] = gen.customers(
            c * lay.customers // n_chunks, (c + 1) * lay.customers // n_chunks
        )
        yield {name: _conform(parts[name], name) for name in contract.TABLES}
