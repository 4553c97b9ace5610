"""The web page at / in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
selenium through /usr/bin/chromedriver, so nothing downloads) against a real uvicorn server serving the
bundled demo model. It uploads the bundled sample video and checks the timeline the page draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from service.launch import running_server
from service.settings import DEMO_CHECKPOINT

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SAMPLE = DEMO_CHECKPOINT.parent / "sample.mp4"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (bash .ci/install installs them)",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"TZN_DEVICE": "cpu", "TZN_TEMP_DIR": str(tmp_path_factory.mktemp("uploads"))}
    with running_server(env, tmp_path_factory.mktemp("logs") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1500", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(argument)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page_after_upload(server, browser):
    """The page once it has uploaded the sample and drawn the answer: (driver, the answer the page got)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "model").text.startswith("model "))
    browser.find_element(By.ID, "file").send_keys(str(SAMPLE))
    WebDriverWait(browser, 300).until(lambda d: d.execute_script("return window.tzn.state") in ("done", "error"))
    state, answer = browser.execute_script("return [window.tzn.state, window.tzn.answer]")
    assert state == "done", answer
    return browser, answer


def rendered_segments(driver) -> list[tuple[str, float, float, float]]:
    from selenium.webdriver.common.by import By

    rects = driver.find_elements(By.CSS_SELECTOR, "#timeline rect.segment")
    return [
        (r.get_attribute("data-label"), float(r.get_attribute("data-start")), float(r.get_attribute("data-end")),
         float(r.get_attribute("data-score")))
        for r in rects
    ]  # fmt: skip


def test_page_is_one_offline_file(server):
    response = httpx.get(f"{server}/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in response.text and "<script src" not in response.text and "<link" not in response.text


def test_timeline_shows_exactly_the_answers_segments(page_after_upload, server, tmp_path):
    driver, answer = page_after_upload
    segments = [(s["label"], s["start_s"], s["end_s"], s["score"]) for s in answer["segments"]]
    assert len(segments) >= 2  # the sample holds two actions, and the demo finds them
    assert rendered_segments(driver) == segments
    # the page shows what the API answers anyone: the same upload through plain HTTP
    with open(SAMPLE, "rb") as file:
        direct = httpx.post(f"{server}/localize", files={"video": (SAMPLE.name, file)}, timeout=300).json()
    assert [s["label"] for s in direct["segments"]] == [s[0] for s in segments]
    for mine, theirs in zip(direct["segments"], segments, strict=True):
        assert mine["start_s"] == pytest.approx(theirs[1], abs=1e-3) and mine["end_s"] == pytest.approx(
            theirs[2], abs=1e-3
        )
    screenshot = tmp_path / "tzn-page.png"
    driver.save_screenshot(str(screenshot))
    print(f"\nscreenshot of the page: {screenshot}")


def test_depth_curve_and_numbers_are_shown(page_after_upload):
    from selenium.webdriver.common.by import By

    driver, answer = page_after_upload
    points = driver.find_element(By.ID, "depth-curve").get_attribute("points").split()
    assert len(points) == len(answer["depth"]["mean_depth"]) > 10
    assert driver.find_element(By.ID, "total").text.endswith("real time")
    compute = driver.find_element(By.ID, "flops").text
    assert f"{answer['flops']['mean_depth']:.2f} of 6 layers" in compute and "GFLOPs" in compute


def test_clicking_a_segment_seeks_the_player_to_its_start(page_after_upload):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, answer = page_after_upload
    last = answer["segments"][-1]
    rect = driver.find_elements(By.CSS_SELECTOR, "#timeline rect.segment")[-1]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", rect)
    rect.click()
    WebDriverWait(driver, 20).until(
        lambda d: abs(d.execute_script("return document.getElementById('player').currentTime") - last["start_s"]) < 0.5
    )
