"""Refresh ``docs/serve.png``, the README's picture of the draw-a-digit page: a 7 drawn with the mouse and read.

    python tools/page_screenshot.py [--out docs/serve.png]

Starts ``digitrec serve`` with the bundled model on a free port of 127.0.0.1, draws the 7 in Debian's
chromium (headless, driven by Selenium, as ``tests/test_page.py`` does), waits for the answer and
saves the window.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DOCS = Path(__file__).resolve().parents[1] / "docs"
SEVEN = [(-70, -80), (70, -80), (-10, 100)]  # CSS pixels from the canvas centre
WINDOW = (820, 700)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS / "serve.png")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port)])
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    browser = None
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)
        browser.get(f"http://127.0.0.1:{port}")
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "model").text.startswith("Model: "))
        canvas = browser.find_element(By.ID, "canvas")
        strokes = ActionChains(browser, duration=20).move_to_element_with_offset(canvas, *SEVEN[0]).click_and_hold()
        for (x0, y0), (x1, y1) in itertools.pairwise(SEVEN):
            for step in range(1, 9):
                strokes.move_to_element_with_offset(canvas, round(x0 + (x1 - x0) * step / 8), round(y0 + (y1 - y0) * step / 8))
        strokes.release().perform()
        WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "digit").text == "7")
        time.sleep(0.5)  # the bars' widths are set with the answer; let the page paint them
        browser.save_screenshot(str(args.out))
        print(f"{args.out}: {browser.find_element(By.ID, 'status').text}")
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
