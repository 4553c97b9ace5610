"""The web page at / in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
selenium through /usr/bin/chromedriver, so nothing downloads) against a real uvicorn server serving the
bundled demo model. It uploads the bundled sample video and checks the timeline the page draws."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from engine.video.container import VIDEO_SUFFIXES
from service.settings import DEMO_CHECKPOINT
from tools.launch import running_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SAMPLE = DEMO_CHECKPOINT.parent / "sample.mp4"
AVI = Path("/usr/share/doc/opencv-doc/examples/data/tree.avi")  # 29.6 s; a container Chromium does not read
SHORT_LIMIT_S = 10

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (bash .ci/install installs them)",
    ),
]


def server_env(tmp_path_factory, **settings: str) -> dict[str, str]:
    jobs = {"TZN_JOBS_DIR": str(tmp_path_factory.mktemp("jobs"))}  # each server its own jobs store
    return {"TZN_DEVICE": "cpu", "TZN_TEMP_DIR": str(tmp_path_factory.mktemp("uploads")), **jobs, **settings}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(server_env(tmp_path_factory), tmp_path_factory.mktemp("logs") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def short_limit_server(tmp_path_factory):
    """A server whose /localize takes at most 10 s of video: the 30 s sample has to go through /jobs."""
    env = server_env(tmp_path_factory, TZN_MAX_DURATION_S=str(SHORT_LIMIT_S))
    with running_server(env, tmp_path_factory.mktemp("logs") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def zoom_server(tmp_path_factory, zoom_checkpoint):
    env = server_env(tmp_path_factory, TZN_CHECKPOINT=str(zoom_checkpoint))
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

    state, answer = choose_video(browser, server, SAMPLE)
    assert state == "done", answer
    assert browser.execute_script("return window.tzn.path") == "localize"
    return browser, answer


def open_page(driver, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{server}/")
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "model").text.startswith("model "))


def choose_video(driver, server: str, video: Path) -> tuple[str, dict]:
    """Opens the page, chooses `video` and waits until the page has finished with it: (state, answer)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, server)
    driver.find_element(By.ID, "file").send_keys(str(video))
    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return window.tzn.state") in ("done", "error"))
    return driver.execute_script("return [window.tzn.state, window.tzn.answer]")


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
    # the file picker offers every suffix the service decodes (.vob, .mts have no video/* type in every browser)
    accepted = re.search(r'<input id="file" type="file" accept="([^"]+)"', response.text).group(1).split(",")
    assert set(VIDEO_SUFFIXES) <= set(accepted)


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


def test_long_video_runs_as_a_job_whose_progress_and_result_are_shown(short_limit_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    state, answer = choose_video(browser, short_limit_server, SAMPLE)
    assert state == "done", answer
    shown = browser.execute_script("return window.tzn")
    # the page read the duration itself and went to /jobs without trying /localize
    assert shown["path"] == "jobs" and f"longer than the {SHORT_LIMIT_S} s" in shown["reason"]
    job = httpx.get(f"{short_limit_server}/jobs/{shown['job_id']}", timeout=10).json()
    assert job["status"] == "succeeded"
    segments = [(s["label"], s["start_s"], s["end_s"], s["score"]) for s in job["result"]["segments"]]
    assert len(segments) >= 2 and rendered_segments(browser) == segments
    unfinished = [p for p in shown["progress"] if p["status"] in ("queued", "running")]
    assert unfinished, shown["progress"]  # at least one progress state was shown before the result
    assert all(0 <= p["fraction"] <= 1 for p in shown["progress"])
    assert browser.find_element(By.ID, "total").text.endswith("real time")
    assert f"{job['result']['flops']['mean_depth']:.2f} of 6 layers" in browser.find_element(By.ID, "flops").text
    points = browser.find_element(By.ID, "depth-curve").get_attribute("points").split()
    assert len(points) == len(job["result"]["depth"]["mean_depth"]) > 10  # the job honoured include=depth
    screenshot = tmp_path / "tzn-page-job.png"
    browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot of the page after a job: {screenshot}")


def test_video_localize_refuses_as_too_long_goes_to_a_job_that_can_be_cancelled(short_limit_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, short_limit_server)
    browser.find_element(By.ID, "file").send_keys(str(AVI))
    WebDriverWait(browser, 120).until(
        lambda d: (
            d.execute_script("return window.tzn.job_id !== null && window.tzn.progress.length > 0")
            or d.execute_script("return window.tzn.state") == "error"
        )
    )
    shown = browser.execute_script("return window.tzn")
    # Chromium cannot read an AVI's duration: /localize answered 413 and the page resubmitted it as a job
    assert shown["path"] == "jobs" and "the limit is 10.0 s" in shown["reason"], shown
    browser.save_screenshot(str(tmp_path / "tzn-page-job-running.png"))
    print(f"\nscreenshot of a job in progress: {tmp_path / 'tzn-page-job-running.png'}")
    browser.find_element(By.ID, "cancel").click()
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.tzn.state") != "running")
    assert browser.execute_script("return window.tzn.state") == "cancelled"
    assert "cancelled" in browser.find_element(By.ID, "status").text
    job = httpx.get(f"{short_limit_server}/jobs/{shown['job_id']}", timeout=10).json()
    assert job["status"] == "cancelled"


def test_a_zoom_checkpoints_windows_and_savings_are_shown(zoom_server, browser):
    from selenium.webdriver.common.by import By

    state, answer = choose_video(browser, zoom_server, SAMPLE)
    assert state == "done", answer
    zoom = answer["zoom"]
    windows = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.zoom-window")
    assert len(windows) == len(zoom["windows"]) > 0
    compute = browser.find_element(By.ID, "flops").text
    assert "backbone at the dense rate" in compute
    assert f"{zoom['frames']['coarse']} + {zoom['frames']['zoom']} frames" in compute
