"""The draw-a-digit page in a real browser (Debian's chromium, headless, driven by Selenium) against the real server."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from digitrec.inference import BUNDLED  # noqa: E402

REALWORLD = REPO.parent / "shared" / "data" / "realworld-dev"
SEVEN = [[(-70, -80), (70, -80), (-10, 100)]]  # strokes, in CSS pixels from the canvas centre
FOUR = [[(-55, -90), (-75, 20), (-10, 20)], [(-35, -40), (-35, 90)]]  # drawn in the left half of the wide canvas
TWO = [[(20, -60), (50, -90), (85, -60), (30, 70), (95, 70)]]  # and in the right half
ONE = [[(0, -90), (0, 90)]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`digitrec serve` with the bundled model on a free port of 127.0.0.1."""
    assert BUNDLED.is_file(), "the bundled model is missing: `make model` builds it"
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    session.set_page_load_timeout(30)
    yield session
    session.quit()


def _open(browser: webdriver.Chrome, base: str) -> None:
    browser.get(base)
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "model").text.startswith("Model: "))


def _draw(browser: webdriver.Chrome, strokes: list[list[tuple[int, int]]], kind: str = interaction.POINTER_MOUSE) -> None:
    canvas = browser.find_element(By.ID, "canvas")
    box = canvas.rect
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    scale = box["height"] / 280  # strokes are given for a 280-px-high canvas
    actions = ActionBuilder(browser, mouse=PointerInput(kind, kind), duration=20)  # ms a move: the default, 250, made a digit take 4-8 s
    for stroke in strokes:
        points = [(round(centre[0] + x * scale), round(centre[1] + y * scale)) for x, y in stroke]
        actions.pointer_action.move_to_location(*points[0]).pointer_down()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            for step in range(1, 9):  # a hand moves through the points between
                actions.pointer_action.move_to_location(round(x0 + (x1 - x0) * step / 8), round(y0 + (y1 - y0) * step / 8))
        actions.pointer_action.pointer_up()
    actions.perform()


def _answer(browser: webdriver.Chrome, expected: str | None = None) -> str:
    def ready(b: webdriver.Chrome) -> str | bool:
        text = b.find_element(By.ID, "digit").text
        return text if text != "?" and (expected is None or text == expected) else False

    try:
        return WebDriverWait(browser, 15).until(ready)
    except Exception:
        return browser.find_element(By.ID, "digit").text + " / " + browser.find_element(By.ID, "status").text


def _no_console_errors(browser: webdriver.Chrome) -> None:
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def _box(browser: webdriver.Chrome, selector: str) -> dict[str, float]:
    return browser.execute_script(f"return document.querySelector({json.dumps(selector)}).getBoundingClientRect().toJSON()")


def test_a_seven_drawn_with_the_mouse_reads_seven(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    caption = browser.find_element(By.CSS_SELECTOR, ".answer figcaption")
    assert not caption.is_displayed()  # nothing seen yet: no caption under an empty space
    _draw(browser, SEVEN)
    assert _answer(browser, "7") == "7"
    assert browser.find_elements(By.CSS_SELECTOR, "#seen img")  # the 28x28 the model saw
    assert caption.is_displayed()
    assert "sure" in browser.find_element(By.ID, "status").text
    assert "100.0%" not in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "digit").text == "?"
    _no_console_errors(browser)


def test_the_top_probability_bar_fills_its_track_and_no_probability_reads_as_certain(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    _draw(browser, SEVEN)
    assert _answer(browser, "7") == "7"
    fill, track = _box(browser, ".bars li.top .fill"), _box(browser, ".bars li.top .bar")
    share = float(browser.find_element(By.CSS_SELECTOR, ".bars li.top .pct").text.strip("> %")) / 100
    assert fill["width"] >= 0.9 * track["width"] * min(share, 1.0) > 0
    assert browser.execute_script("return [percent(0.99985), percent(0.9994), percent(0.5), percent(0)]") == \
        ["> 99.9%", "99.9%", "50.0%", "0.0%"]


def test_switching_to_a_number_and_back_keeps_the_drawing_and_reads_it_again(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    _draw(browser, SEVEN)
    assert _answer(browser, "7") == "7"
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=number]").click()
    WebDriverWait(browser, 15).until(lambda b: "The number 7," in b.find_element(By.ID, "status").text)  # read again, as a number
    _draw(browser, [[(x + 140, y) for x, y in stroke] for stroke in ONE])  # a 1 in the right half: 71
    assert _answer(browser, "71") == "71"
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=digit]").click()  # the row, scaled down to fit
    assert browser.execute_script("return strokes.length") == 2
    assert _answer(browser) not in ("?", "")
    _no_console_errors(browser)


def test_clearing_while_a_read_is_on_its_way_keeps_the_page_empty(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    # Clear is pressed the moment the first read sets off (the page marks the result aria-busy), so its answer is still on
    # its way; then the test waits until no read is on its way any more
    browser.execute_script("""
        const result = document.querySelector(".result");
        new MutationObserver((changes, observer) => {
            if (result.getAttribute("aria-busy") !== "true") return;
            observer.disconnect();
            document.getElementById("clear").click();
            window.clearedWhileReading = true;
        }).observe(result, {attributes: true, attributeFilter: ["aria-busy"]});""")
    _draw(browser, SEVEN)
    WebDriverWait(browser, 15).until(lambda b: b.execute_script(
        'return window.clearedWhileReading === true && document.querySelector(".result").getAttribute("aria-busy") === "false"'))
    assert browser.find_element(By.ID, "digit").text == "?"
    assert browser.find_element(By.ID, "status").text == "Draw a digit to see it read."


def test_touch_strokes_read_a_digit(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    _draw(browser, ONE, interaction.POINTER_TOUCH)
    assert _answer(browser) in "0123456789"
    _no_console_errors(browser)


def test_number_mode_reads_four_then_two_as_42(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=number]").click()
    _draw(browser, FOUR)
    _draw(browser, TWO)
    assert _answer(browser, "42") == "42"
    _no_console_errors(browser)


def test_an_uploaded_real_world_image_reads_its_label(browser: webdriver.Chrome, server: str):
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} not found")
    _open(browser, server)
    image = REALWORLD / "3_1.png" if (REALWORLD / "3_1.png").is_file() else sorted(REALWORLD.glob("*.png"))[0]
    browser.find_element(By.ID, "file").send_keys(str(image))
    assert _answer(browser, image.name[0]) == image.name[0]
    _no_console_errors(browser)


def test_a_phone_screen_shows_the_answer_beside_the_canvas_without_sideways_scroll(browser: webdriver.Chrome, server: str):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    try:
        _open(browser, server)
        width, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
        assert width == 360 and scroll <= width
        _draw(browser, SEVEN)
        assert _answer(browser, "7") == "7"
        for shown in ("#canvas", "#digit", "#status"):  # the answer is in view while the finger is on the canvas
            box = _box(browser, shown)
            assert box["top"] >= 0 and box["bottom"] <= 740, (shown, box)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    _no_console_errors(browser)


def test_the_model_name_and_accuracy_are_shown(browser: webdriver.Chrome, server: str):
    _open(browser, server)
    with urllib.request.urlopen(f"{server}/api/model") as response:
        accuracy = json.load(response)["test_accuracy"]
    assert f"{100 * accuracy:.2f}%" in browser.find_element(By.ID, "model").text
    assert Path(BUNDLED).stat().st_size < 2_000_000
