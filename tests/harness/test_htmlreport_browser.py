"""The HTML report in a real browser: Debian's chromium, headless, driven
by Selenium through Debian's chromedriver (no browser is downloaded).
Skipped, saying why, where either or Selenium is missing (.ci/run installs
them)."""

import os
import shutil
import tempfile
import time

import psutil
import pytest

import pexen.journal as journal

from ..conftest import SERVICES
from .test_cli import _start_and_kill, harness
from .test_execmeta import exe
from .test_htmlreport import page_data, path_env, report_suite

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"no {path}: apt-get install {package} (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="pexen-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1200",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    pid = service.process.pid
    SERVICES.add(pid)   # (the browser lives for the module's tests)
    try:
        yield driver
    finally:
        try:
            below = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            below = []
        driver.quit()
        SERVICES.discard(pid)
        gone, alive = psutil.wait_procs(below, timeout=10)
        for proc in alive:   # (what quit did not end: ours, by pid)
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(check, timeout=10):
    """Wait until `check()` is true (the page redraws after a timer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def type_search(driver, text):
    driver.execute_script("""
        var box = document.getElementById('search');
        box.value = arguments[0];
        box.dispatchEvent(new Event('input'));""", text)


def open_page(driver, path):
    driver.get("about:blank")
    driver.get("file://" + str(path))
    assert wait_for(lambda: driver.execute_script(
        "return !!document.body && document.body.getAttribute('data-ready') === '1'")), \
        "the page's script did not finish"
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors


def rows(driver):
    """(key, outcome) of the task rows shown."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#tasks tbody tr:not(.detail)'))
            .map(function (tr) { return [tr.cells[0].textContent, tr.dataset.outcome]; });""")


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run of the report suite whose controller was killed once, resumed
    to the end: its page, and the journal's counts."""
    where = tmp_path_factory.mktemp("resumed")
    report_suite(where / "suite")
    for i in range(120):   # more than a page of the table
        exe(where / "suite" / "many" / f"t{i:03d}", "sleep 0.0$((RANDOM % 5))")
    exe(where / "suite" / "slow", "sleep 1.5")
    _start_and_kill_dir(where)
    res = harness("resume", "--html", "r.html", cwd=where, env=path_env())
    assert res.returncode == 1, res.stdout + res.stderr
    with journal.open(str(where / "pexen-journal.sqlite"), create=False) as j:
        counts = j.counts(j.newest().id)
    return where / "r.html", counts


def _start_and_kill_dir(where):
    """Start the directory suite at -j 2 and SIGKILL its controller while
    tasks run (as test_cli's helper does for its Python suite)."""
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ)
    env.pop("PEXEN_JOURNAL", None)
    env.update(path_env())
    proc = subprocess.Popen([sys.executable, "-m", "pexen.harness.cli", "start", "suite",
                             "-j", "2"], cwd=where, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        path = where / "pexen-journal.sqlite"
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    with journal.open(str(path), create=False) as j:
                        run = j.newest()
                        if run is not None and j.counts(run.id).get("pass", 0) >= 20:
                            break
                except journal.JournalError:
                    pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


def test_counts_filter_output_and_timeline(browser, resumed_run, tmp_path):
    page, counts = resumed_run
    open_page(browser, page)
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # the hostile output did nothing
    assert "pwned" not in browser.title and browser.title.startswith("suite: run 1")
    assert not browser.find_elements("css selector", "img")
    # the counts on the page are the journal's
    shown = dict(browser.execute_script("""
        return Array.from(document.querySelectorAll('#counts button[data-outcome]'))
            .map(function (b) { return [b.dataset.outcome, b.textContent]; });"""))
    assert shown == {state: f"{state} {n}" for state, n in counts.items()}
    total = sum(counts.values())
    assert browser.find_element("id", "shown").text == f"All {total} tasks."
    assert browser.find_element("id", "page-info").text == \
        f"tasks 1-100 of {total} (page 1 of 2)"
    # only the failures
    browser.find_element("css selector", "#counts button[data-outcome=fail]").click()
    assert [outcome for _, outcome in rows(browser)] == ["fail"] * counts["fail"]
    assert browser.find_element("id", "shown").text == \
        f"{counts['fail']} of {total} tasks shown."
    # a task's output, collapsed until opened
    browser.find_element("css selector", "#counts button.all").click()
    browser.find_element("id", "search").send_keys("hostile")
    assert wait_for(lambda: [key for key, _ in rows(browser)] == ["hostile"]), rows(browser)
    browser.find_element("css selector", "#tasks tbody td.key button").click()
    out = browser.find_element("css selector", "details[data-stream=stdout]")
    assert out.get_attribute("open") is None
    pre = out.find_element("css selector", "pre")
    assert not pre.is_displayed()
    out.find_element("css selector", "summary").click()
    assert pre.is_displayed()
    text = pre.get_attribute("textContent")
    assert text.startswith('</script><script>document.title="pwned"</script><!-- red')
    assert "<img src=x onerror=alert(1)>" in text
    assert "The whole stream: " in out.text and out.text.rstrip().endswith("1.out")
    browser.save_screenshot(str(tmp_path / "output.png"))
    # sort by duration, longest first
    type_search(browser, "")
    assert wait_for(lambda: len(rows(browser)) == 100)
    header = browser.find_element("css selector", "th[data-col=time] button")
    header.click()
    header.click()
    assert browser.find_element("css selector", "th[data-col=time]").get_attribute(
        "aria-sort") == "descending"
    assert rows(browser)[0][0] == "slow"


def test_hovering_and_choosing_a_bar(browser, resumed_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    page, _ = resumed_run
    data = page_data(page)
    open_page(browser, page)
    canvas = browser.find_element("id", "timeline")
    key = "slow"
    i = data["tasks"]["key"].index(key)
    spot = browser.execute_script("return window.pexenReport.barSpot(arguments[0])", i)
    assert spot is not None, "the bar is not on the timeline"
    x, y = spot
    width = canvas.size["width"]
    height = canvas.size["height"]
    # (ActionChains offsets are from the element's centre)
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x - width / 2), int(y - height / 2)).perform()
    tip = browser.find_element("id", "tooltip")
    assert tip.is_displayed()
    assert tip.text.splitlines()[0] == key
    assert "pass" in tip.text and "started" in tip.text
    browser.save_screenshot(str(tmp_path / "hover.png"))
    # the gap of the controller's death is on the timeline, and named
    gap = data["gaps"][0]
    mid = browser.execute_script("return window.pexenReport.x(arguments[0])",
                                 (gap["start"] + gap["end"]) / 2)
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(mid - width / 2), int(height / 2 - 4)).perform()
    assert "controller was dead" in tip.text or tip.text.splitlines()[0] in data["tasks"]["key"]
    # choosing the bar shows its task in the table, opened
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x - width / 2), int(y - height / 2)).click().perform()
    assert rows(browser) == [[key, "pass"]]
    assert browser.find_element("id", f"detail-{i}").is_displayed()
    # zoom in: the view narrows around the middle
    before = browser.execute_script("return window.pexenReport.view()")
    browser.find_element("id", "zoom-in").click()
    after = browser.execute_script("return window.pexenReport.view()")
    assert after[1] - after[0] == pytest.approx((before[1] - before[0]) / 2, rel=1e-6)
    browser.find_element("id", "zoom-all").click()
    assert browser.execute_script("return window.pexenReport.view()") == before


def test_the_timeline_by_keyboard(browser, resumed_run, tmp_path):
    """Tab to the timeline; the arrows choose bars (in time order, and lane to
    lane), each said in the live region and outlined; Enter shows the
    task; + zooms around it; Escape lets go."""
    from selenium.webdriver.common.keys import Keys

    page, _ = resumed_run
    data = page_data(page)
    open_page(browser, page)
    canvas = browser.find_element("id", "timeline")
    canvas.send_keys(Keys.HOME)
    assert browser.switch_to.active_element == canvas
    live = browser.find_element("id", "timeline-live")
    bars = data["bars"]
    first = bars[0]
    assert browser.execute_script("return window.pexenReport.chosen()") == [first, bars[1]]
    key = data["tasks"]["key"][first]
    assert live.get_attribute("textContent").startswith(key + "; attempt ")
    canvas.send_keys(Keys.ARROW_RIGHT)
    second = bars[6]
    assert browser.execute_script("return window.pexenReport.chosen()") == [second, bars[7]]
    canvas.send_keys(Keys.END)
    last = len(bars) // 6 - 1
    assert browser.execute_script("return window.pexenReport.chosen()") == [
        bars[last * 6], bars[last * 6 + 1]]
    if data["lanes"] > 1:   # down from lane 1 to a bar of lane 2
        canvas.send_keys(Keys.HOME)
        lane = bars[5]
        canvas.send_keys(Keys.ARROW_DOWN if lane == 0 else Keys.ARROW_UP)
        chosen = browser.execute_script("return window.pexenReport.chosen()")
        index = next(b for b in range(len(bars) // 6)
                     if bars[b * 6] == chosen[0] and bars[b * 6 + 1] == chosen[1])
        assert bars[index * 6 + 5] != lane
    browser.save_screenshot(str(tmp_path / "keyboard.png"))
    before = browser.execute_script("return window.pexenReport.view()")
    canvas.send_keys("+")
    after = browser.execute_script("return window.pexenReport.view()")
    assert after[1] - after[0] == pytest.approx((before[1] - before[0]) / 2, rel=1e-6)
    chosen = browser.execute_script("return window.pexenReport.chosen()")
    canvas.send_keys(Keys.ENTER)
    key = data["tasks"]["key"][chosen[0]]
    assert key in [r[0] for r in rows(browser)]   # (the search is the key: "bad" finds
    assert browser.find_element("id", f"detail-{chosen[0]}").is_displayed()  # "needs_bad")
    canvas.send_keys(Keys.ESCAPE)
    assert browser.execute_script("return window.pexenReport.chosen()") is None


def test_a_run_still_going_and_one_whose_controller_died(browser, tmp_path):
    _start_and_kill(tmp_path, {})
    res = harness("export", "--html", "dead.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    open_page(browser, tmp_path / "dead.html")
    title = browser.find_element("id", "title").text
    assert title == "slow: run 1 unfinished (its controller died)"
    sessions = browser.find_elements("css selector", "#sessions tbody tr")
    assert len(sessions) == 1 and "died" in sessions[0].text
    facts = browser.find_element("id", "facts").text
    assert "pexen-harness resume continues it" in facts
    browser.save_screenshot(str(tmp_path / "dead.png"))
