"""Words as query understanding compares them: folded, joined, singular; and the built-in synonyms.

"Men's T-Shirts" and "mens tshirt" fold to the same tokens, so a query word can be looked up in a
catalog's own values without a stemmer (the keyword index has its own, Porter, in SQLite).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

_JOINERS = re.compile(r"(?<=\w)['’\-](?=\w)")  # t-shirt -> tshirt, men's -> mens
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")

STOPWORDS = frozenset(
    "a an and the for with in on of to by from at or is are my me i some any this that these those "
    "find show looking want need please".split()
)

# Real words of the trade, in their singular form, never "corrected" to a collection's word one edit
# away ("shirt" is not a typo of "short", even in a shop that sells no shirts).
FASHION_WORDS = frozenset("""
shirt short skirt dress coat boot shoe sock belt bag hat cap scarf glove tie top tee vest tank jean pant
trouser legging tight jacket blazer suit hoodie sweater jumper cardigan pullover sweatshirt polo blouse
tunic kurta saree bra brief boxer trunk bikini swimsuit robe pyjama gown jumpsuit romper overall sandal
heel flat loafer sneaker trainer slipper clog mule pump wallet watch ring necklace earring bracelet
glass sunglass backpack clutch purse tote sling
black white grey gray blue navy red pink green yellow orange purple brown beige cream ivory gold silver
khaki olive maroon burgundy teal tan camel lilac lavender coral mint rust mustard charcoal nude
cotton linen wool silk denim leather suede velvet satin lace knit fleece nylon jersey cashmere
men women boy girl kid baby unisex summer winter spring autumn fall casual formal party sport
long slim wide loose fit plain stripe striped check floral print printed solid
""".split())

# Groups of words that name the same thing in fashion catalogs; every member maps to the others.
BUILTIN_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("sneakers", "trainers", "sports shoes"),
    ("tee", "t-shirt", "tees", "tshirt"),
    ("trousers", "pants"),
    ("jumper", "sweater", "pullover"),
    ("hoodie", "hooded sweatshirt", "hoody"),
    ("handbag", "purse"),
    ("flip flops", "sandals"),
    ("sweatpants", "joggers", "track pants"),
    ("tank", "vest", "singlet"),
    ("coat", "jacket"),
    ("grey", "gray"),
    ("bra", "bralette"),
    ("rucksack", "backpack"),
)

# Query words that name a gender, as the values catalogs use for it.
GENDER_WORDS: Mapping[str, str] = {
    "man": "men", "male": "men", "gent": "men", "gents": "men", "guy": "men", "mens": "men",
    "woman": "women", "female": "women", "lady": "women", "ladie": "women", "womens": "women",
    "boy": "boys", "girl": "girls", "kid": "kids", "child": "kids", "children": "kids",
}


def fold(text: str) -> str:
    """Lower case, accents dropped, apostrophes and hyphens inside words removed."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _JOINERS.sub("", text)


def singular(word: str) -> str:
    """A plural's singular by the common English rules; the same word when unsure. Applied to both
    sides of a comparison, so it only needs to be consistent ("hoodies" and "hoodie" meet)."""
    if len(word) <= 3 or word.isdigit() or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """The comparable words of a text, in order."""
    return [singular(t) for t in _TOKEN.findall(fold(text))]


def synonym_map(groups: Iterable[Sequence[str]]) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Each phrase (as tokens) to the other phrases of its groups."""
    found: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for group in groups:
        phrases = list(dict.fromkeys(tuple(tokens(p)) for p in group if tokens(p)))
        for phrase in phrases:
            found.setdefault(phrase, []).extend(p for p in phrases if p != phrase and p not in found[phrase])
    return found


def damerau_within_one(a: str, b: str) -> bool:
    """True when `a` becomes `b` by at most one insertion, deletion, substitution or swap of neighbours."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    if la > lb:
        return a[i + 1 :] == b[i:]
    return a[i:] == b[i + 1 :]
