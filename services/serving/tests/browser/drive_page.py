"""Drives serving's web page in headless Chromium as a user would, and screenshots each state.

1. Load the page: the controls take the server's defaults and limits, the examples appear.
2. Choose photos of one's own: thumbnails appear; reorder and remove one with the keyboard.
3. Load an example subject in one click: its demonstrations and prompt suggestions appear.
4. Pick a suggestion and generate with the Enter key: the images appear enlarged, each with its
   seed and a download link, with the release and the time taken.
5. Ask for more steps than the server allows: the page shows the API's error code and message.
6. The same page at a phone's width does not scroll sideways.

Usage: drive_page.py BASE_URL SCREENSHOT_DIR DEMO_PNG [DEMO_PNG ...]
SUTI_PAGE_STEPS sets the denoising steps of the generation (default 3: quick; the docs'
screenshots use the server's default against a trained release).
Prints one "ok: ..." line per step; exits 1 at the first step that fails.
"""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def main() -> int:
    base_url, shots, demos = sys.argv[1], sys.argv[2], sys.argv[3:]
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,1400", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 60)
    by_id = lambda i: driver.find_element(By.ID, i)  # noqa: E731
    try:
        # 1. The page with the server's settings and the examples.
        driver.get(base_url + "/")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#examples button.example")) > 0)
        settings = json.loads(driver.execute_script(
            "return fetch('/v1/settings').then(r => r.text())"))
        check(by_id("steps").get_attribute("value") == str(settings["default_steps"]),
              "the steps field does not hold the server's default")
        check(by_id("steps").get_attribute("max") == str(settings["max_steps"]),
              "the steps field does not carry the server's limit")
        check(by_id("num_images").get_attribute("max") == str(settings["max_images"]),
              "the images field does not carry the server's limit")
        check(by_id("max-demos").text == str(settings["max_demonstrations"]),
              "the page does not state the server's demonstration limit")
        check(not by_id("report-link").get_attribute("hidden"), "the report link is hidden")
        driver.save_screenshot(f"{shots}/page-start.png")
        print(f"ok: loaded, steps {settings['default_steps']}/{settings['max_steps']}, "
              f"{len(driver.find_elements(By.CSS_SELECTOR, '#examples button.example'))} examples")

        # 2. Photos of one's own: thumbnails, reorder and remove by keyboard.
        by_id("files").send_keys("\n".join(demos))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#demos img.demo")) == len(demos))
        first = driver.find_elements(By.CSS_SELECTOR, "#demos img.demo")[0].get_attribute("src")
        later = driver.find_element(By.CSS_SELECTOR, "#demos li:first-child button[aria-label^='move demonstration 1 later']")
        later.send_keys(Keys.ENTER)
        second = driver.find_elements(By.CSS_SELECTOR, "#demos img.demo")[1].get_attribute("src")
        check(second == first, "moving the first demonstration later did not reorder them")
        remove = driver.find_element(By.CSS_SELECTOR, "#demos li:first-child button[aria-label^='remove']")
        remove.send_keys(Keys.ENTER)
        count = len(driver.find_elements(By.CSS_SELECTOR, "#demos img.demo"))
        check(count == len(demos) - 1, f"removing a demonstration left {count}")
        driver.save_screenshot(f"{shots}/page-own-photos.png")
        print(f"ok: {len(demos)} photos chosen, reordered, one removed")

        # 3. An example subject in one click.
        driver.find_elements(By.CSS_SELECTOR, "#examples button.example")[0].click()
        wait.until(lambda d: "example loaded" in by_id("status").text)
        thumbs = driver.find_elements(By.CSS_SELECTOR, "#demos img.demo")
        suggestions = driver.find_elements(By.CSS_SELECTOR, "#suggestions button")
        check(len(thumbs) >= 1, "the example has no demonstrations on the page")
        check(len(suggestions) >= 3, "the example brings no prompt suggestions")
        driver.save_screenshot(f"{shots}/page-example.png")
        print(f"ok: example {by_id('status').text!r}, {len(thumbs)} demonstrations, "
              f"{len(suggestions)} suggestions")

        # 4. A suggestion, then Enter in the prompt generates.
        suggestions[1].click()
        check(by_id("prompt").get_attribute("value") == suggestions[1].text,
              "a suggestion did not fill the prompt")
        images = by_id("num_images")
        images.clear()
        images.send_keys("2")
        steps = by_id("steps")
        steps.clear()
        steps.send_keys(os.environ.get("SUTI_PAGE_STEPS", "3"))
        seed = by_id("seed")
        seed.clear()
        seed.send_keys("7")
        by_id("prompt").send_keys(Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img.result")) == 2
                   or "error" in by_id("status").get_attribute("class"))
        status = by_id("status").text
        results = driver.find_elements(By.CSS_SELECTOR, "#results img.result")
        check(len(results) == 2, f"no images; status line: {status!r}")
        check("images from" in status and " ms " in status, f"status lacks release or time: {status!r}")
        loaded = driver.execute_script(
            "return Array.from(document.querySelectorAll('#results img.result'))"
            ".every(i => i.complete && i.naturalWidth > 0 && i.clientWidth >= 4 * i.naturalWidth"
            " && getComputedStyle(i).imageRendering === 'pixelated')")
        check(loaded, "the result images did not decode, or are not enlarged with crisp pixels")
        captions = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#results figcaption")]
        check(captions[0].startswith("seed 7") and captions[1].startswith("seed 8"),
              f"the results do not show their seeds: {captions}")
        links = driver.find_elements(By.CSS_SELECTOR, "#results figcaption a[download]")
        check(len(links) == 2 and links[0].get_attribute("download") == "suti-7.png",
              "the results have no download links")
        driver.save_screenshot(f"{shots}/page-results.png")
        print(f"ok: {status}")

        # 5. A refused request shows the API's error.
        steps.clear()
        steps.send_keys(str(settings["max_steps"] + 1))
        by_id("generate").click()
        wait.until(lambda d: "error" in by_id("status").get_attribute("class"))
        error = by_id("status").text
        check(error.startswith("bad_steps:") and str(settings["max_steps"]) in error,
              f"the refusal does not show its code and message: {error!r}")
        driver.save_screenshot(f"{shots}/page-error.png")
        print(f"ok: refused: {error}")

        # 6. A phone's width.
        driver.set_window_size(390, 1200)
        steps.clear()
        steps.send_keys("3")
        by_id("generate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img.result")) == 2)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width")
        driver.execute_script("document.getElementById('generate').scrollIntoView()")
        driver.save_screenshot(f"{shots}/page-phone.png")
        print("ok: phone width without sideways scrolling")
        return 0
    except Failed as failure:
        print(f"FAILED: {failure}")
        driver.save_screenshot(f"{shots}/failure.png")
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
