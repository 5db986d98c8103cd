#!/usr/bin/env python3
"""Drives the agent's dashboard in a real Chromium (selenium + chromedriver).

Called by tests/dashboard.rs with a running agent; exits non-zero naming the first
expectation that did not hold. Usage:
  dashboard.py URL TOKEN CRASH_FILE SHOTS_DIR
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL, TOKEN, CRASH_FILE, SHOTS = sys.argv[1:5]
DEADLINE = 30


def wait(what, fn, timeout=DEADLINE):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except (StaleElementReferenceException, NoSuchElementException, IndexError, ValueError) as e:
            last = e
        time.sleep(0.1)
    fail(f"timed out after {timeout}s waiting for: {what} (last error: {last})")


def do(what, fn):
    """Runs an action on elements that a live update may replace meanwhile: again until it
    finds them in place."""
    wait(what, lambda: fn() or True)


def fail(why):
    try:
        driver.save_screenshot(os.path.join(SHOTS, "failure.png"))
        print(driver.find_element(By.TAG_NAME, "body").text[:4000], file=sys.stderr)
    except Exception:
        pass
    print(f"FAIL: {why}", file=sys.stderr)
    driver.quit()
    sys.exit(1)


def check(cond, why):
    if not cond:
        fail(why)


def no_script_ran():
    try:
        driver.switch_to.alert
        fail("an alert() from a hostile string ran")
    except NoAlertPresentException:
        pass
    check(driver.execute_script("return window.__pwned === undefined"), "a hostile string ran as script")
    imgs = driver.execute_script("return document.querySelectorAll('img').length")
    check(imgs == 0, f"a hostile string became an element: {imgs} <img> on the page")


def row(service):
    return driver.find_element(By.CSS_SELECTOR, f'#service-table tr[data-service="{service}"]')


def cell(service, cls):
    return row(service).find_element(By.CSS_SELECTOR, "td." + cls).text


options = webdriver.ChromeOptions()
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,900", "--disable-gpu"]:
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    # Without a session the page is the login form; a wrong token is refused.
    driver.get(URL + "/")
    box = wait("the login form", lambda: driver.find_element(By.NAME, "token"))
    box.send_keys("wrong-token")
    box.submit()
    wait("the refusal", lambda: "not this agent's token" in driver.page_source)
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.NAME, "token").submit()

    # The services are listed.
    wait("the service table to list web and crashy",
         lambda: row("web") and row("crashy") and cell("web", "c-state").startswith("running"))
    wait("the live stream to connect", lambda: driver.find_element(By.ID, "live").text == "live")

    # Hostile strings in a log line render as text.
    do("open web's log", lambda: row("web").find_element(By.CSS_SELECTOR, "td.c-name").click())
    log = wait("web's log tail", lambda: driver.find_element(By.ID, "log-text").text)
    wait("the hostile log line", lambda: "<script>window.__pwned=1</script>" in driver.find_element(By.ID, "log-text").text)
    check('"><img src=x onerror=window.__pwned=2>' in driver.find_element(By.ID, "log-text").text, f"log: {log}")
    no_script_ran()

    # A crash's explain finding appears without a reload.
    marker = driver.execute_script("window.__same_page = 1; return 1")
    open(CRASH_FILE, "w").close()
    finding = wait("crashy's finding in its row",
                   lambda: row("crashy").find_element(By.CSS_SELECTOR, "td.c-exit").text)
    wait("the cuda-oom finding", lambda: "cuda-oom" in cell("crashy", "c-exit"))
    check(driver.execute_script("return window.__same_page") == marker, "the page reloaded")
    do("close the log", lambda: driver.find_element(By.ID, "log-close").click())
    driver.save_screenshot(os.path.join(SHOTS, "services.png"))

    # The restart button restarts the service: its pid changes.
    pid = wait("web's pid", lambda: int(cell("web", "c-pid")))
    do("click restart", lambda: row("web").find_element(By.CSS_SELECTOR, 'button[data-action="restart"]').click())
    wait("web's pid to change", lambda: cell("web", "c-pid").isdigit() and int(cell("web", "c-pid")) != pid
         and cell("web", "c-state").startswith("running"))

    # An action without the session is refused (the page's own fetch, no cookie).
    status = driver.execute_script(
        "return fetch('/api/v1/services/web/restart', {method: 'POST', credentials: 'omit'}).then(r => r.status)")
    check(status == 401, f"an action without the token got {status}")

    # A quarantined job shows its reason; its detail shows each attempt's finding.
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="queues"]').click()
    hostile = lambda: [r for r in driver.find_elements(By.CSS_SELECTOR, "#quarantine-table tbody tr")
                       if "onerror" in r.text]
    text = wait("the quarantined job", lambda: hostile()[0].text)
    check("killed by SIGSEGV" in text, f"quarantine row: {text}")
    check('"><img src=x onerror=window.__pwned=3>.pdf' in text, f"the file name was not shown as text: {text}")
    no_script_ran()
    wait("the queue counts", lambda: "ocr" in driver.find_element(By.ID, "queue-table").text)
    driver.save_screenshot(os.path.join(SHOTS, "queues.png"))
    do("open the job", lambda: hostile()[0].click())
    wait("the job detail", lambda: "segfault" in driver.find_element(By.ID, "attempt-table").text)
    detail = driver.find_element(By.ID, "job-detail")
    driver.execute_script("arguments[0].scrollIntoView()", detail)
    driver.save_screenshot(os.path.join(SHOTS, "job-detail.png"))
    no_script_ran()

    # The events timeline has the crash with its finding.
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="events"]').click()
    wait("the crash in the timeline", lambda: "cuda-oom" in driver.find_element(By.ID, "event-list").text)
    print(json.dumps({"ok": True, "finding": finding}))
finally:
    driver.quit()
