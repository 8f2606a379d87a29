"""Rating validation and the append-only ratings log: round trip, later ratings win, torn lines, concurrency."""
from __future__ import annotations

import json
import threading

import pytest

from flan_jax.evaluation import ratings
from flan_jax.evaluation.ratings import RatingError
from flan_jax.evaluation.side_by_side import RunFileError

IDS = {"p0", "p1", "p2"}


def _rating(**overrides):
  return {"item": "p0", "rater": "ann", "choice": "1", "comment": "", "time": "2024-01-01T00:00:00+00:00",
          **overrides}


def test_a_valid_rating_is_normalised():
  r = ratings.check_rating(_rating(rater="  ann ", comment=" fine \n"), IDS)
  assert r["rater"] == "ann" and r["comment"] == "fine"
  assert ratings.check_rating({"item": "p1", "rater": "bo", "choice": "tie"}, IDS)["comment"] == ""


@pytest.mark.parametrize("overrides, message", [
    ({"item": "p9"}, 'item: "p9" is not an item of this rating set'),
    ({"item": 0}, "item: 0 is not an item"),
    ({"choice": "3"}, "choice: \"3\" is not one of ['1', '2', 'tie']"),
    ({"choice": 1}, "choice: 1 is not one of"),
    ({"rater": " "}, "rater: a non-empty name is needed"),
    ({"rater": None}, "rater: a non-empty name is needed"),
    ({"rater": "x" * 65}, "rater: at most 64 characters"),
    ({"rater": "a\x07b"}, "rater: control characters"),
    ({"comment": "x" * 4001}, "comment: a string of at most 4000"),
    ({"extra": 1}, "unknown field(s) ['extra']"),
])
def test_bad_ratings_are_refused_naming_the_field(overrides, message):
  with pytest.raises(RatingError) as e:
    ratings.check_rating(_rating(**overrides), IDS)
  assert message in str(e.value)


def test_append_and_read_back_with_later_ratings_winning(tmp_path):
  path = tmp_path / "ratings.jsonl"
  assert ratings.read(path, IDS) == []
  ratings.append(path, _rating())
  ratings.append(path, _rating(item="p1", choice="tie", comment="close"))
  ratings.append(path, _rating(choice="2", comment="changed my mind"))
  ratings.append(path, _rating(rater="bo", choice="1"))
  rows = ratings.read(path, IDS)
  assert len(rows) == 4 and path.read_text().count("\n") == 4
  latest = ratings.latest(rows)
  assert set(latest) == {("p0", "ann"), ("p1", "ann"), ("p0", "bo")}
  assert latest[("p0", "ann")]["choice"] == "2" and latest[("p0", "ann")]["comment"] == "changed my mind"


def test_a_torn_last_line_is_skipped_then_cut_before_the_next_append(tmp_path, capsys):
  path = tmp_path / "ratings.jsonl"
  ratings.append(path, _rating())
  with open(path, "a") as f:
    f.write('{"item": "p1", "rater": "ann", "cho')
  assert [r["item"] for r in ratings.read(path, IDS)] == ["p0"]
  assert "ratings.jsonl:2: skipping a torn last line" in capsys.readouterr().err
  ratings.append(path, _rating(item="p2"))
  assert "dropping a torn last line" in capsys.readouterr().err
  assert [json.loads(l)["item"] for l in path.read_text().splitlines()] == ["p0", "p2"]


def test_a_whole_but_unterminated_last_line_is_kept(tmp_path):
  path = tmp_path / "ratings.jsonl"
  path.write_text(json.dumps(_rating()))
  assert len(ratings.read(path, IDS)) == 1
  ratings.append(path, _rating(item="p1"))
  assert [json.loads(l)["item"] for l in path.read_text().splitlines()] == ["p0", "p1"]


def test_a_bad_line_inside_the_log_fails_naming_it(tmp_path):
  path = tmp_path / "ratings.jsonl"
  path.write_text(json.dumps(_rating()) + "\nnot json\n" + json.dumps(_rating()) + "\n")
  with pytest.raises(RunFileError, match="ratings.jsonl:2: not JSON"):
    ratings.read(path, IDS)
  path.write_text(json.dumps(_rating()) + "\n" + json.dumps(_rating(choice="B")) + "\n")
  with pytest.raises(RunFileError, match="ratings.jsonl:2: choice"):
    ratings.read(path, IDS)


def test_concurrent_appends_keep_every_line_whole(tmp_path):
  path = tmp_path / "ratings.jsonl"
  comment = "long comment " * 200  # several KB per line, so interleaved writes would show

  def rate(rater):
    for k in range(20):
      ratings.append(path, _rating(rater=rater, item=f"p{k % 3}", comment=f"{rater} {k} {comment}"))

  threads = [threading.Thread(target=rate, args=(f"r{t}",)) for t in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  rows = ratings.read(path, IDS)
  assert sorted((r["rater"], r["comment"]) for r in rows) == sorted(
      (f"r{t}", f"r{t} {k} {comment}".strip()) for t in range(6) for k in range(20))
