"""Drives serving's web page in headless Chromium, as a user would: choose demonstration images,
type a prompt, press Generate, and wait for the rendered images.

Usage: drive_page.py BASE_URL DEMO_PNG [DEMO_PNG ...]
Exits 0 when the page shows the demonstrations and the generated images, 1 otherwise.
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def main() -> int:
    base_url, demos = sys.argv[1], sys.argv[2:]
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(base_url + "/")
        files = driver.find_element(By.ID, "files")
        files.send_keys("\n".join(demos))
        WebDriverWait(driver, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#demos img.demo")) == len(demos)
        )
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a teapot in the snow")
        count = driver.find_element(By.ID, "num_images")
        count.clear()
        count.send_keys("2")
        steps = driver.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("3")
        driver.find_element(By.ID, "generate").click()
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img.result")) == 2
            or "error" in d.find_element(By.ID, "status").get_attribute("class")
        )
        status = driver.find_element(By.ID, "status").text
        results = driver.find_elements(By.CSS_SELECTOR, "#results img.result")
        if len(results) != 2:
            print(f"no images; status line: {status!r}")
            return 1
        WebDriverWait(driver, 10).until(
            ec.text_to_be_present_in_element((By.ID, "status"), "images from")
        )
        loaded = driver.execute_script(
            "return Array.from(document.querySelectorAll('#results img.result'))"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        if not loaded:
            print("the result images did not decode")
            return 1
        print(f"ok: {driver.find_element(By.ID, 'status').text}")
        return 0
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
