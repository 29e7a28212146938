"""A real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium)
against `incidents serve` with a tokens file, one of each per module.

When Chromium or its driver is missing, it is installed with apt-get (as root, where apt-get
exists): a fresh CI machine runs these tests rather than skipping them. They skip, saying
why, only where installing is impossible. Selenium is told where both binaries are, so it
never tries to download a browser or a driver. Screenshots go to `tests/browser/artifacts/`
(git-ignored; the path is printed).
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver
from serve_process import ServeProcess
from tests_support import TOKENS, apt_install

from browser.support import ARTIFACTS, HEIGHT, WIDTH, Console
from services.auth import token_entry

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
PACKAGES = ("chromium", "chromium-driver")


def _found() -> tuple[str, str] | None:
    browser = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    driver = next((p for name in DRIVERS if (p := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of the Chromium binary and of chromedriver, installed if needed."""
    found = _found()
    if found is None:
        why = apt_install(PACKAGES)
        found = _found()
        if found is None:
            pytest.skip(f"no headless Chromium for the browser tests: {why}")
    return found


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str]) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},{HEIGHT}",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download anything
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=chromium[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`incidents serve` (embedded nats-server, real HTTP on a free port) with one token per
    role, as the `guarded` fixture, in a child process the browser can reach while tests wait."""
    root = tmp_path_factory.mktemp("console")
    tokens = root / "tokens.toml"
    tokens.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    served = ServeProcess(root / "var", INCIDENTS_TOKENS_FILE=str(tokens))
    try:
        served.wait_ready()
        yield Console(served.http_url)
    finally:
        served.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS
