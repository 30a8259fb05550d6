"""Shop exports carry HTML descriptions and prices written for people: both become plain values here.

HTML is stripped to text before anything is indexed or shown, so markup never feeds the keyword
index (the query "ul li" must not match every product). Prices keep their currency, and a locale's
separators (`1.299,00 EUR`, `$1,299.00`) are read as that locale writes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser

_LOOKS_LIKE_HTML = re.compile(
    r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*|!--)[^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table tbody td tfoot th thead tr ul".split()
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("• ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(text: str, *, single_line: bool = False) -> str:
    """Tags dropped (script and style with their content), entities decoded, block tags as line
    breaks; runs of spaces and blank lines collapsed. Text without markup is returned as it was."""
    if not text or not _LOOKS_LIKE_HTML.search(text):
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    lines = [re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in "".join(parser.parts).split("\n")]
    lines = [line for line in lines if line and line != "•"]
    return " ".join(lines) if single_line else "\n".join(lines)


@dataclass(frozen=True)
class Money:
    amount: float
    currency: str | None  # ISO 4217 code when the text named one (or a symbol that names one)


# Symbols that name one currency; a bare "$" or "kr" names several, so it is kept as no currency.
_SYMBOLS = {"€": "EUR", "£": "GBP", "₹": "INR", "₩": "KRW", "₽": "RUB", "₺": "TRY", "zł": "PLN", "r$": "BRL",
            "a$": "AUD", "c$": "CAD", "us$": "USD"}
_CODE = re.compile(r"(?<![A-Za-z])([A-Z]{3})(?![A-Za-z])")
_NUMBER = re.compile(r"-?\d[\d.,' \u00a0\u202f]*")


def parse_money(value: object) -> Money | None:
    """'52', '$1,299.00', '1.299,00 EUR', '15.00 USD', 52 -> Money; '' or None -> None.

    With both separators the last one is the decimal point; a lone separator followed by exactly three
    digits (`1,299`, `1.299.000`) groups thousands. Raises ValueError for anything that is not a price.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int | float):
        return Money(_checked(float(value)), None)
    text = str(value).strip()
    currency = None
    code = _CODE.search(text)
    if code:
        currency = code.group(1)
    else:
        lowered = text.lower()
        for symbol, iso in sorted(_SYMBOLS.items(), key=lambda kv: -len(kv[0])):
            if symbol in lowered:
                currency = iso
                break
    found = _NUMBER.search(text)
    if not found:
        raise ValueError("no number")
    return Money(_checked(_parse_number(found.group(0))), currency)


def _parse_number(raw: str) -> float:
    number = re.sub(r"[' \u00a0\u202f]", "", raw).rstrip(".,")
    dot, comma = number.rfind("."), number.rfind(",")
    if dot >= 0 and comma >= 0:  # both: the last one is the decimal separator
        decimal = "." if dot > comma else ","
        grouping = "," if decimal == "." else "."
        number = number.replace(grouping, "").replace(decimal, ".")
    elif comma >= 0 or dot >= 0:
        sep = "," if comma >= 0 else "."
        groups = number.split(sep)
        thousands = len(groups) > 2 or (len(groups) == 2 and len(groups[1]) == 3 and sep == ",")
        if len(groups) > 2 and not all(len(g) == 3 for g in groups[1:]):
            raise ValueError("not a number")
        number = "".join(groups) if thousands else number.replace(",", ".")
    return float(number)


def _checked(amount: float) -> float:
    if not math.isfinite(amount) or amount < 0:
        raise ValueError("not a finite, non-negative number")
    return amount
