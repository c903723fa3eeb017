"""The upload page in a real browser, for tests/clients/browser.rs: Debian's chromium, headless,
driven by its chromedriver through selenium (PyPI, in .ci/tools/py).

    browser_upload.py BASE_URL TOKEN FILE ARTIFACTS CHROMIUM CHROMEDRIVER PROFILE

Checks on the way that a wrong token and an existing name are refused in words, and that the
listing's copy button copies the hash.

Talks with the Rust test in lines: on stdout `KILL sent total` once the page shows the upload
between 10% and 80% (the test then SIGKILLs the server, restarts it on the same port and
answers `RESTARTED` on stdin), then `RESUMED offset`, `SHA256 hex` and `DONE`. Any failure is a
line on stderr and a non-zero exit. Every wait is for a condition in the page, with a deadline.
"""

import os
import sys

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Upload throughput while the cut is to land mid-upload: a 48 MiB file takes about 24 s.
THROTTLE = 2 << 20


def say(*words):
    print(*words, flush=True)


def fail(why):
    print("browser_upload.py: " + why, file=sys.stderr, flush=True)
    sys.exit(1)


def wait(driver, what, cond, seconds):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: cond())
    except TimeoutException:
        fail(f"no {what} within {seconds} s")


def row(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr")
    return rows[0] if len(rows) == 1 else None


def main():
    base, token, path, artifacts, chromium, chromedriver, profile = sys.argv[1:8]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in [
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        "--user-data-dir=" + profile,
        # Nothing but the server under test: no proxy, no background requests.
        "--no-proxy-server",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-domain-reliability",
        "--no-pings",
    ]:
        options.add_argument(arg)
    service = Service(chromedriver, log_output=os.path.join(profile, "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        run(driver, base, token, path, artifacts)
    finally:
        driver.quit()


def run(driver, base, token, path, artifacts):
    # From the listing of the upload directory to the page, by its link.
    driver.get(base + "/incoming/")
    driver.find_element(By.LINK_TEXT, "Upload files").click()
    wait(driver, "upload page", lambda: driver.current_url == base + "/_upload/", 10)

    # A wrong token is said, and no upload starts.
    field = driver.find_element(By.ID, "token")
    field.send_keys("not-the-token")
    driver.find_element(By.ID, "files").send_keys(path)
    msg = driver.find_element(By.ID, "msg")
    wait(driver, "the refusal of a wrong token", lambda: "refused (401)" in msg.text, 10)
    if driver.find_elements(By.CSS_SELECTOR, "#rows tr"):
        fail("an upload started with a wrong token")
    field.clear()
    field.send_keys(token)

    # Slow uploads down, so that the server dies mid-upload.
    driver.set_network_conditions(
        offline=False, latency=0, download_throughput=64 << 20, upload_throughput=THROTTLE
    )
    driver.find_element(By.ID, "files").send_keys(path)

    def progress():
        r = row(driver)
        if r is None:
            return None
        if r.get_attribute("data-state") == "error":
            fail("the upload failed: " + r.text)
        sent, total = r.get_attribute("data-sent"), r.get_attribute("data-total")
        if sent is None or total is None or int(sent) < int(total) // 10:
            return None
        return int(sent), int(total)

    sent, total = wait(driver, "progress past 10%", progress, 60)
    if sent * 10 > total * 8:
        fail(f"already {sent} of {total} bytes sent: the throttling did not hold the upload back")
    say("KILL", sent, total)
    answer = sys.stdin.readline().strip()
    if answer != "RESTARTED":
        fail(f"expected RESTARTED on stdin, got {answer!r}")

    # Reload: a new page, which knows the upload only by the file's fingerprint.
    driver.delete_network_conditions()
    driver.refresh()
    wait(driver, "the reloaded page", lambda: driver.find_element(By.ID, "token"), 10)
    kept = driver.find_element(By.ID, "token").get_attribute("value")
    if kept != token:
        fail(f"the token was not kept for this tab (sessionStorage): {kept!r}")
    if driver.find_elements(By.CSS_SELECTOR, "#rows tr"):
        fail("rows on a fresh page")
    driver.find_element(By.ID, "files").send_keys(path)

    def finished():
        r = row(driver)
        state = r.get_attribute("data-state") if r else None
        if state == "error":
            fail("the resumed upload failed: " + r.text)
        return r if state == "done" else None

    r = wait(driver, "the end of the resumed upload", finished, 90)
    resumed = r.get_attribute("data-resumed-at")
    if resumed is None or not 0 < int(resumed) < total:
        fail(f"not resumed from an offset inside the file: {resumed!r}; row: {r.text}")
    if f"(resumed at {resumed} bytes)" not in r.text:
        fail("the page does not say where it resumed: " + r.text)
    sha = r.get_attribute("data-sha256") or ""
    if sha not in r.text:
        fail("the page does not show the SHA-256: " + r.text)
    say("RESUMED", resumed)
    say("SHA256", sha)
    os.makedirs(artifacts, exist_ok=True)
    if not driver.save_screenshot(os.path.join(artifacts, "upload-page.png")):
        fail("no screenshot of the upload page")

    # The listing shows the published file's hash, with a copy button that the script shows
    # and that puts the hash on the clipboard.
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    driver.get(base + "/incoming/")
    name = os.path.basename(path)
    code = driver.find_element(By.XPATH, f"//tr[td/a[@href='./{name}']]/td/code")
    if code.text != sha:
        fail(f"the listing shows {code.text!r}, the page {sha!r}")
    button = code.find_element(By.XPATH, "following-sibling::button")
    if not button.is_displayed():
        fail("the copy button is hidden")
    button.click()
    wait(driver, "the copy button to say copied", lambda: button.text == "copied", 10)
    copied = driver.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, (e) => done('!' + e))"
    )
    if copied != sha:
        fail(f"the clipboard holds {copied!r}, not the hash")
    if not driver.save_screenshot(os.path.join(artifacts, "upload-listing.png")):
        fail("no screenshot of the listing")

    # The same file again: it is there now, and the server does not overwrite; said in words.
    driver.get(base + "/_upload/")
    driver.find_element(By.ID, "files").send_keys(path)

    def refused():
        r = row(driver)
        return r if r is not None and r.get_attribute("data-state") == "error" else None

    r = wait(driver, "the refusal of an existing name", refused, 30)
    if "already there" not in r.text or "(409)" not in r.text:
        fail("an existing file is not said as such: " + r.text)
    say("DONE")


if __name__ == "__main__":
    main()
