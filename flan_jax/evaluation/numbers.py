"""Numbers as a language writes them: its decimal mark, its digit-group marks, a sign; currency and units ignored.

| languages                    | decimal | digit groups            |
|------------------------------|---------|-------------------------|
| bn, en, ja, sw, te, th, zh   | `.`     | `,`                     |
| de                           | `,`     | `.`                     |
| es, fr, ru                   | `,`     | a space (also NBSP, narrow NBSP) or `.` |

(These are the languages' CLDR conventions, and the ones the MGSM questions of each language use.) Reading a
number token such as `1.234,5`:
  * the language's decimal mark, when it occurs once and is the token's last mark, is the decimal point;
  * the other mark groups digits when a group of exactly three digits follows it; written once, last, before fewer
    or more than three digits (`2.5` in German, `2,5` in English) it is read as a decimal point, the writer having
    used the other convention;
  * a token whose marks fit neither reading (`1,23,4`) is not a number.
A `-` or `−` right before the digits (or before a currency sign and the digits) is a minus sign unless a letter
or digit precedes it (`58-23` is two numbers, `COVID-19` is 19). Values are written canonically: `1,000` -> `1000`,
`2.50` -> `2.5`, `18.0` -> `18`, `-0` -> `0`.
"""
from __future__ import annotations

import dataclasses
import decimal
import re


@dataclasses.dataclass(frozen=True)
class NumberFormat:
  decimal: str            # "." or ","
  space_groups: bool      # a space may group digits ("5 000")


_POINT = NumberFormat(".", space_groups=False)
FORMATS = {"de": NumberFormat(",", space_groups=False), "es": NumberFormat(",", space_groups=True),
           "fr": NumberFormat(",", space_groups=True), "ru": NumberFormat(",", space_groups=True)}
_SPACES = " \u00a0\u202f"
_CURRENCY = "$€£¥₹₽₩"


def number_format(lang: str) -> NumberFormat:
  return FORMATS.get(lang, _POINT)


def _pattern(fmt: NumberFormat) -> re.Pattern:
  space_group = rf"|[{_SPACES}]\d{{3}}(?!\d)" if fmt.space_groups else ""
  return re.compile(rf"(?<![\d.,])(?:(?<!\w)(?P<sign>[-\u2212])[{_CURRENCY}]?)?"
                    rf"(?P<digits>\d+(?:[.,]\d+{space_group})*)")


_PATTERNS = {fmt: _pattern(fmt) for fmt in {_POINT, *FORMATS.values()}}


def _value(digits: str, fmt: NumberFormat) -> decimal.Decimal | None:
  """The value of a digit string with marks (`1.234,5`), or None when its marks fit no reading."""
  parts = re.split(rf"([.,{_SPACES}])", digits)
  groups, marks = parts[0::2], parts[1::2]
  point = None
  if marks:
    last = marks[-1]
    if marks.count(last) == 1 and last not in _SPACES and (last == fmt.decimal or len(groups[-1]) != 3):
      point = len(marks) - 1
  if any(i != point and len(groups[i + 1]) != 3 for i in range(len(marks))):
    return None
  whole = "".join(groups[:point + 1] if point is not None else groups)
  fraction = groups[-1] if point is not None else ""
  return decimal.Decimal(f"{whole}.{fraction}" if fraction else whole)


def canonical(value: decimal.Decimal) -> str:
  if value == value.to_integral_value():
    return str(int(value))
  return format(value.normalize(), "f")


def read_numbers(text: str, lang: str = "en") -> list[str]:
  """Every number in `text`, in order, canonically written, read with the conventions of `lang`."""
  fmt = number_format(lang)
  out = []
  for match in _PATTERNS[fmt].finditer(text):
    value = _value(match.group("digits"), fmt)
    if value is not None:
      out.append(canonical(-value if match.group("sign") else value))
  return out


def normalize(text: str, lang: str = "en") -> str:
  """The one number `text` holds (a benchmark target such as "1,000"), canonically written; "" if none."""
  found = read_numbers(text.strip(), lang)
  return found[0] if len(found) == 1 else ""
