"""Numbers read with each language's conventions, on hand-made cases and on every grouped number the MGSM
questions of each language write."""
from __future__ import annotations

import re

import pytest

from flan_jax.evaluation import mgsm, numbers


@pytest.mark.parametrize("text, lang, want", [
    ("5 + 6 = 11. The answer is 11.", "en", ["5", "6", "11", "11"]),
    ("It costs 1,250 dollars", "en", ["1250"]),
    ("She makes 9 * 2 = $18 every day.", "en", ["9", "2", "18"]),
    ("2.50 dollars, 18.0 hours, 3.", "en", ["2.5", "18", "3"]),
    ("12,345,678.9", "en", ["12345678.9"]),
    ("1.000", "en", ["1"]),                      # "." is the English decimal mark
    ("1,5", "en", ["1.5"]),                      # the other convention, read as a decimal point
    ("1,23,4", "en", []),                        # fits neither reading
    ("5 000", "en", ["5", "0"]),                 # spaces do not group digits in English
    ("It is -3. And −7.", "en", ["-3", "-7"]),   # hyphen-minus and the minus sign
    ("58-23=35", "en", ["58", "23", "35"]),      # a hyphen after a digit is not a sign
    ("COVID-19", "en", ["19"]),
    ("-$5 and -0", "en", ["-5", "0"]),
    ("Die Antwort lautet 2.500.", "de", ["2500"]),
    ("2,5 Liter und 0.30 Euro", "de", ["2.5", "0.3"]),
    ("1.234.567,89", "de", ["1234567.89"]),
    ("1,000", "de", ["1"]),
    ("5 000 € et 1,5 kg", "fr", ["5000", "1.5"]),
    ("5\u202f000 et 5\u00a0000", "fr", ["5000", "5000"]),
    ("La respuesta es 1.250.", "es", ["1250"]),
    ("1 500,75 рубля", "ru", ["1500.75"]),
    ("答えは11個です。", "ja", ["11"]),
    ("คำตอบคือ 1,250 บาท", "th", ["1250"]),
])
def test_read_numbers(text, lang, want):
  assert numbers.read_numbers(text, lang) == want


def test_normalize_takes_one_number():
  assert numbers.normalize("2,125") == "2125" and numbers.normalize(" 70000 ") == "70000"
  assert numbers.normalize("1.5") == "1.5" and numbers.normalize("2,5", "de") == "2.5"
  assert numbers.normalize("x") == "" and numbers.normalize("1 and 2") == ""


@pytest.mark.parametrize("lang", mgsm.LANGUAGES)
def test_grouped_numbers_in_the_mgsm_questions(lang, flan_data_dir):
  """Each language's questions write thousands its own way ("80.000" de, "50 000" fr, "50,000" en): every
  number of 4+ digits written in groups of three reads as the integer its digits spell."""
  grouped = re.compile(r"(?<![\d.,])\d{1,3}(?:[.,  \u202f]\d{3})+(?![\d])(?![.,]\d)")
  seen = 0
  for question, _ in mgsm.read_questions(lang):
    for token in grouped.findall(question):
      if numbers.number_format(lang).decimal in token and not numbers.number_format(lang).space_groups:
        continue  # "1.500" in English is one and a half: not a grouped number
      assert numbers.read_numbers(token, lang) == [str(int(re.sub(r"\D", "", token)))], (lang, token)
      seen += 1
  assert seen >= 3, lang
