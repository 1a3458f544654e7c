"""The status page in headless Chromium, against a real cluster.

tests/tests/ui.rs starts the cluster (three volumes, a secret, keys under
/photos/ and /bulk/), then runs this file with pytest from the venv of
scripts/ui-deps.sh. The tests run in file order and share one browser:
they are the story of one night — the page loads, the keys are browsed and
one is downloaded, a verify is started and stopped from the page, a volume
dies and turns red, the page still reads on a phone; and, run again on its
own, a volume's disk stops taking writes and the page names it.

Settings come from the environment:
  TROVE_UI_MASTER   http://host:port of the master
  TROVE_UI_OUT      where the screenshots go
  TROVE_UI_ADMIN    "1" when the master runs with --ui-admin
  TROVE_UI_VICTIM   pid and address of the volume to kill ("pid@host:port"),
                    absent for a read-only run
  TROVE_UI_STALLED  host:port of a volume whose disk tests/tests/ui.rs has
                    frozen, with a write waiting on it (run alone, with
                    `-k disk_stalled`)
"""

import hashlib
import os
import shutil
import signal
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

MASTER = os.environ["TROVE_UI_MASTER"]
OUT = os.environ["TROVE_UI_OUT"]
ADMIN = os.environ.get("TROVE_UI_ADMIN") == "1"
VICTIM = os.environ.get("TROVE_UI_VICTIM")
STALLED = os.environ.get("TROVE_UI_STALLED")
WIDTH = 1280
WAIT = 20  # seconds any condition may take to come true


def value_of(key):
    """What tests/tests/ui.rs stored under `key`."""
    return (f"the value of {key}\n" * 64).encode()


@pytest.fixture(scope="module")
def browser():
    downloads = os.path.join(OUT, "downloads")
    os.makedirs(downloads, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.downloads = downloads
    driver.get(MASTER + "/-/ui?poll=500")
    yield driver
    driver.quit()


def shot(driver, name, height=None):
    """Saves the whole page (not only the window) as OUT/<name>.png, or its
    top `height` pixels."""
    width = driver.get_window_size()["width"]
    height = height or driver.execute_script("return document.documentElement.scrollHeight") + 140
    driver.set_window_size(width, min(height, 6000))
    time.sleep(0.2)  # one frame for the relayout; the conditions were checked before
    driver.save_screenshot(os.path.join(OUT, name + ".png"))
    driver.set_window_size(width, 1000)


def wait(driver, what, condition):
    """Waits for `condition`; the page redraws on every poll, so an element
    found a moment ago may be gone, and one not drawn yet (a volume's card
    looked up by address: `KeyError`) is missing: such a try just counts as
    "not yet"."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException,
                                             KeyError)).until(
        lambda d: condition(d), message=f"waited {WAIT}s for {what}")


def volumes(driver):
    """Every volume card as {address: (state, text)}, read in one go."""
    return dict(driver.execute_script("""
        return [...document.querySelectorAll('#volumes .card')]
            .map(c => [c.dataset.volume, [c.dataset.state, c.innerText]]);"""))


def states(driver):
    return [state for state, _ in volumes(driver).values()]


def job(driver, name):
    """The job's card as (state, text), read in one go; None before it ran."""
    return driver.execute_script("""
        const j = document.querySelector('#jobs .job[data-job="' + arguments[0] + '"]');
        return j && [j.dataset.state, j.innerText];""", name)


def confirm(driver):
    """Answers the page's confirmation dialog with yes."""
    wait(driver, "the confirmation", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()


def test_the_page_shows_three_healthy_volumes(browser):
    wait(browser, "the first poll", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    wait(browser, "three healthy volumes", lambda d: states(d) == ["up", "up", "up"])
    wait(browser, "the headline", lambda d: d.find_element(By.ID, "summary").text == "all 3 volumes healthy")
    wait(browser, "the key count", lambda d: int(d.find_element(By.ID, "keys-live").text.replace(",", "")) > 60)
    for state, text in volumes(browser).values():
        assert "used" in text and "free" in text and "s ago" in text and "blobs" in text, text
    # Rates appear from the second poll on.
    wait(browser, "a request rate", lambda d: "/s" in d.find_element(By.ID, "rate-requests").text)
    assert browser.find_element(By.ID, "admin").is_displayed() == ADMIN
    shot(browser, "01-healthy")


def test_the_key_browser_lists_a_prefix_page_by_page(browser):
    box = browser.find_element(By.ID, "prefix")
    box.clear()
    box.send_keys("/photos/")
    box.submit()
    # A common prefix is one of a page's 50 entries, as a key is.
    wait(browser, "the first page", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#listing tbody tr")) == 50)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#listing tr.object")) == 49
    prefixes = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing tr.prefix a")]
    assert prefixes == ["/photos/2024/"]
    browser.find_element(By.ID, "more").click()
    wait(browser, "the second page", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#listing tr.object")) == 60)
    keys = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing tr.object a")]
    assert keys == [f"/photos/a-{i:03}.jpg" for i in range(60)]
    assert not browser.find_element(By.ID, "more").is_displayed()
    shot(browser, "02-listing")


def test_a_prefix_ending_in_a_dot_lists_only_the_keys_under_it(browser):
    # A browser drops the dot segments of a URL's path: the page must send
    # the prefix as a parameter, or `/dots/.` would list all of `/dots/`.
    box = browser.find_element(By.ID, "prefix")
    box.clear()
    box.send_keys("/dots/.")
    box.submit()
    wait(browser, "the listing of /dots/.", lambda d: "/dots/." in d.find_element(By.ID, "listing-note").text)
    keys = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing tr.object a")]
    assert keys == ["/dots/.hidden"]
    box.clear()
    box.send_keys("/photos/")
    box.submit()
    wait(browser, "the listing of /photos/", lambda d: "/photos/a-000.jpg" in d.find_element(By.ID, "listing").text)


def test_a_key_shows_its_record_and_downloads_through_the_redirect(browser):
    key = "/photos/a-007.jpg"
    browser.find_element(By.CSS_SELECTOR, f'#listing a[data-key="{key}"]').click()
    wait(browser, "the record", lambda d: d.find_element(By.ID, "record-key").text == key)
    value = value_of(key)
    facts = browser.find_element(By.ID, "record-facts").text
    assert hashlib.sha256(value).hexdigest() in facts
    assert hashlib.md5(value).hexdigest() in facts
    assert f"{len(value):,} bytes" in browser.find_element(By.ID, "record-size").text
    assert browser.find_element(By.ID, "record-balance").text == "balanced"
    link = browser.find_element(By.ID, "download")
    assert link.get_attribute("href") == MASTER + key  # the master's redirect, never a volume URL
    link.click()
    target = os.path.join(browser.downloads, "a-007.jpg")
    wait(browser, "the download", lambda d: os.path.exists(target) and open(target, "rb").read() == value)
    shot(browser, "03-key")


@pytest.mark.skipif(not ADMIN, reason="the page has no admin actions without --ui-admin")
def test_a_verify_started_from_the_page_shows_its_progress_and_stops(browser):
    browser.find_element(By.CSS_SELECTOR, '#admin-job option[value="verify"]').click()
    browser.find_element(By.ID, "admin-deep").click()
    browser.find_element(By.ID, "admin-concurrency").clear()
    browser.find_element(By.ID, "admin-concurrency").send_keys("1")
    # Paced, so that it still runs when the page is read, however fast
    # the machine verifies.
    browser.find_element(By.ID, "admin-rate").send_keys("20")
    browser.find_element(By.ID, "admin-start").click()
    wait(browser, "the confirmation", lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    assert "Start verify (deep, at most 20/s)" in browser.find_element(By.ID, "confirm-text").text
    shot(browser, "04-confirm")
    confirm(browser)

    def running_with_progress(d):
        j = job(d, "verify")
        if j is None or j[0] != "running":
            return False
        done, total = j[1].split(" keys")[0].split("\n")[-1].split(" / ")
        return 0 < int(done.replace(",", "")) < int(total.replace(",", "")) and "ETA" in j[1]

    wait(browser, "a running verify with progress and an ETA", running_with_progress)
    # The pace the card shows is the server's report of what it runs.
    assert "at most 20/s" in job(browser, "verify")[1]
    shot(browser, "05-verify-running")
    wait(browser, "the Stop button", lambda d: d.find_element(By.CSS_SELECTOR, '[data-job="verify"] button[data-stop]').click() or True)
    confirm(browser)
    wait(browser, "the verify stopped", lambda d: job(d, "verify")[0] == "cancelled")
    shot(browser, "06-verify-stopped")


@pytest.mark.skipif(not VICTIM, reason="no volume to kill in this run")
def test_a_killed_volume_turns_red_within_seconds(browser):
    pid, addr = VICTIM.split("@")
    wait(browser, "three healthy volumes", lambda d: states(d) == ["up", "up", "up"])
    os.kill(int(pid), signal.SIGKILL)
    killed = time.monotonic()
    wait(browser, f"{addr} red", lambda d: volumes(d)[addr][0] == "down")
    took = time.monotonic() - killed
    assert took < 5, f"the page showed the dead volume after {took:.1f}s"
    text = volumes(browser)[addr][1]
    assert "down" in text and "unreachable" in text, text  # and why: the master's last error
    wait(browser, "the headline", lambda d: d.find_element(By.ID, "summary").text == "1 of 3 volumes down")
    shot(browser, "07-volume-down")


@pytest.mark.skipif(not (ADMIN and VICTIM), reason="needs --ui-admin and a dead volume")
def test_problems_found_by_a_verify_are_listed(browser):
    browser.find_element(By.ID, "admin-deep").click()  # off again: a quick check
    browser.find_element(By.ID, "admin-concurrency").clear()
    browser.find_element(By.ID, "admin-concurrency").send_keys("8")
    browser.find_element(By.ID, "admin-rate").clear()  # no pace
    browser.find_element(By.ID, "admin-start").click()
    confirm(browser)
    wait(browser, "the verify done", lambda d: job(d, "verify")[0] == "done")
    _, addr = VICTIM.split("@")
    wait(browser, "its problems", lambda d: f"on {addr} not checked" in d.find_element(By.ID, "problems").text)
    # The top of the page (the key list below is long): the picture in docs/.
    browser.execute_script("window.scrollTo(0, 0)")
    shot(browser, "08-problems", height=1250)


def test_the_page_reads_on_a_phone(browser):
    browser.set_window_size(390, 844)
    wait(browser, "a poll at phone width", lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    # What a phone shows first: the headline and the volumes.
    browser.save_screenshot(os.path.join(OUT, "09-phone.png"))
    browser.set_window_size(WIDTH, 1000)


def test_without_ui_admin_the_page_offers_nothing_and_the_master_refuses(browser):
    if ADMIN:
        pytest.skip("this master runs with --ui-admin")
    assert not browser.find_element(By.ID, "admin").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "button[data-stop]") == []
    assert "--ui-admin" in browser.find_element(By.ID, "admin-message").text
    status = browser.execute_script("""
        const r = await fetch('/-/ui/jobs/verify', {method: 'POST', headers: {'Trove-Ui': '1'}, body: '{}'});
        return r.status;""")
    assert status == 403
    with urllib.request.urlopen(MASTER + "/-/ui/state") as r:
        assert b'"admin":false' in r.read()
    shot(browser, "01-read-only")


@pytest.mark.skipif(not STALLED, reason="no volume with a stalled disk in this run")
def test_a_volume_whose_disk_stopped_shows_disk_stalled(browser):
    # tests/tests/ui.rs froze the volume's disk and left a write waiting on it.
    def stalled(d):
        state, text = volumes(d)[STALLED]
        # and why: the master's reason
        return state == "warn" and "disk stalled" in text and "is not answering" in text
    wait(browser, f"{STALLED} shown with its disk stalled", stalled)
    wait(browser, "the headline", lambda d: d.find_element(By.ID, "summary").text == "1 of 3 volumes: disk stalled")
    shot(browser, "10-disk-stalled")
