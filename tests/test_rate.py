"""`flan-jax rate`: the rating server's API, then the page itself in headless Chromium (selenium)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from flan_jax import cli, rate
from flan_jax.evaluation import open_ended, side_by_side
from rating_fixtures import model_of_response, write_rating_dir


@contextlib.contextmanager
def serving(directory, port=0, rater=None):
  server = rate.make_server(directory, port=port, rater=rater)
  thread = rate.serve_in_thread(server)
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}"
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _get(url):
  with urllib.request.urlopen(url, timeout=10) as r:
    return r.status, r.read().decode("utf-8")


def _post(url, body):
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(url + "/api/rate", data=data, headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=10) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _lines(directory):
  return [json.loads(l) for l in (directory / side_by_side.RATINGS).read_text().splitlines()]


def test_api_serves_the_blinded_set_and_validates_ratings(tmp_path):
  write_rating_dir(tmp_path, n=4)
  with serving(tmp_path) as url:
    status, page = _get(url + "/")
    assert status == 200 and "Response 1 better" in page
    items = json.loads(_get(url + "/api/items")[1])
    assert items["rater"] is None and [i["id"] for i in items["items"]] == ["p0", "p1", "p2", "p3"]
    served = json.dumps(items)
    assert "model-A" not in served and "output_a" not in served and "key" not in served
    assert _post(url, {"item": "p1", "rater": "ann", "choice": "2", "comment": "shorter"}) == (
        200, {"rater": "ann", "rated": ["p1"], "total": 4})
    assert json.loads(_get(url + "/api/progress?rater=ann")[1])["rated"] == ["p1"]
    assert json.loads(_get(url + "/api/progress?rater=bo")[1])["rated"] == []
    for body, message in [({"item": "nope", "rater": "ann", "choice": "1"}, '"nope" is not an item'),
                          ({"item": "p0", "rater": "ann", "choice": "A"}, "choice: \"A\" is not one of"),
                          ({"item": "p0", "choice": "1"}, "rater: a non-empty name is needed"),
                          ({"item": "p0", "rater": "ann", "choice": "1", "time": "x"}, "time: set by the server"),
                          ([1, 2], "the body must be a JSON object"),
                          (b"{not json", "the body is not JSON")]:
      status, reply = _post(url, body)
      assert status == 400 and message in reply["error"], body
    with pytest.raises(urllib.error.HTTPError) as e:
      _get(url + "/api/progress?rater=")
    assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
      _get(url + "/key.json")
    assert e.value.code == 404
  rows = _lines(tmp_path)
  assert len(rows) == 1 and rows[0]["item"] == "p1" and rows[0]["comment"] == "shorter" and rows[0]["time"]


def test_a_fixed_rater_is_the_only_one_accepted(tmp_path):
  write_rating_dir(tmp_path, n=2)
  with serving(tmp_path, rater="judge") as url:
    assert json.loads(_get(url + "/api/items")[1])["rater"] == "judge"
    status, reply = _post(url, {"item": "p0", "rater": "other", "choice": "1"})
    assert status == 400 and "this server rates as 'judge'" in reply["error"]
    assert _post(url, {"item": "p0", "rater": "judge", "choice": "tie"})[0] == 200


def test_rate_command_fails_clearly_on_a_dir_without_rating_set(tmp_path, capsys):
  assert cli.main(["rate", str(tmp_path), "--port", "0"]) == 2
  assert "rating_set.jsonl: missing" in capsys.readouterr().err
  write_rating_dir(tmp_path, n=2)
  (tmp_path / side_by_side.RATINGS).write_text("garbage\n{}\n")
  assert cli.main(["rate", str(tmp_path), "--port", "0"]) == 2
  assert "ratings.jsonl:1: not JSON" in capsys.readouterr().err


# --- the page in a real browser ---------------------------------------------------------------------------------

def _browser_paths() -> tuple[str, str]:
  browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
  driver = shutil.which("chromedriver")
  if not browser or not driver:
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver; CI's "
                ".ci/run installs them)")
  return browser, driver


@pytest.fixture
def browser(monkeypatch):
  webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the [test] extra")
  from selenium.webdriver.chrome.service import Service
  binary, driver_path = _browser_paths()
  monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860"):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
  try:
    yield driver
  finally:
    driver.quit()


def _wait_text(driver, element_id, text, timeout=10):
  from selenium.webdriver.support.ui import WebDriverWait
  WebDriverWait(driver, timeout).until(lambda d: d.find_element("id", element_id).text == text,
                                       f"#{element_id} never read {text!r}")


def _press(driver, keys):
  from selenium.webdriver.common.action_chains import ActionChains
  ActionChains(driver).send_keys(keys).perform()


def test_rating_page_in_a_browser(browser, tmp_path):
  from selenium.webdriver.common.keys import Keys
  directory = tmp_path / "run"
  prompts = write_rating_dir(directory, n=4)
  items = side_by_side.load_rating_set(directory)
  find = lambda element_id: browser.find_element("id", element_id)  # noqa: E731

  def on_item(k):
    _wait_text(browser, "prompt", prompts[k].inputs)
    assert find("response-1").text == items[k]["response_1"]
    assert find("response-2").text == items[k]["response_2"]
    _wait_text(browser, "progress", f"{k} / 4 rated")

  with serving(directory) as url:
    port = int(url.rsplit(":", 1)[1])
    browser.get(url + "/")
    _wait_text(browser, "need-name", "Type your name above and press Enter to start rating.")
    assert not find("rating").is_displayed()
    find("rater").send_keys("alice", Keys.ENTER)
    on_item(0)
    assert find("submit").get_attribute("disabled") is not None
    # Item 0 with clicks: Response 1, a comment, the save button.
    find("choose-1").click()
    assert find("choose-1").get_attribute("aria-pressed") == "true"
    find("comment").send_keys("clearer answer")
    find("submit").click()
    on_item(1)
    # Item 1 with keys: Enter alone only asks for a choice; then 2 and Enter.
    _press(browser, Keys.ENTER)
    _wait_text(browser, "status", "Choose first: 1, 2 or t.")
    on_item(1)
    _press(browser, "2")
    assert find("status").text == ""
    assert find("choose-2").get_attribute("aria-pressed") == "true"
    _press(browser, Keys.ENTER)
    on_item(2)
  with serving(directory, port=port) as url:  # a restarted server (same origin, so the name is remembered)
    browser.get(url + "/")
    on_item(2)
    # Item 2: t, then a comment typed in the box and sent with Enter.
    _press(browser, "t")
    find("comment").click()
    find("comment").send_keys("both fine", Keys.ENTER)
    on_item(3)
    browser.refresh()  # a reload resumes at the first unrated item
    on_item(3)
    _press(browser, "1")
    find("comment").send_keys("Response 1 answers the question; Response 2 drifts.")
    shot = tmp_path / "rating_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    _press(browser, Keys.ENTER)  # the comment box has focus: Enter saves
    _wait_text(browser, "progress", "4 / 4 rated")
    assert find("done").is_displayed() and "All 4 items rated" in find("done").text
    # Another rater on the same set starts at the beginning.
    find("rater").clear()
    find("rater").send_keys("bob", Keys.ENTER)
    on_item(0)

  rows = _lines(directory)
  assert [(r["item"], r["rater"], r["choice"], r["comment"]) for r in rows] == [
      ("p0", "alice", "1", "clearer answer"), ("p1", "alice", "2", ""), ("p2", "alice", "tie", "both fine"),
      ("p3", "alice", "1", "Response 1 answers the question; Response 2 drifts.")]
  assert all(r["time"].endswith("+00:00") for r in rows)

  assert open_ended.main(["--report", str(directory), "--resamples", "100"]) == 0
  results = json.loads((directory / "results.json").read_text())
  models = model_of_response(directory)
  wins = sum(models[r["item"]][r["choice"]] == "a" for r in rows if r["choice"] != "tie")
  assert results["ratings"] == 4 and results["raters"] == {"alice": 4}
  assert results["overall"]["win"]["rate"] == pytest.approx(100 * wins / 4)
  assert results["overall"]["tie"]["rate"] == pytest.approx(25.0)
  assert os.path.exists(directory / "results.md")
