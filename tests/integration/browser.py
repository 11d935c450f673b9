"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium.

Nothing is downloaded: selenium is pointed at the installed chromedriver, and Chromium is
started without its background traffic to Google hosts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def missing() -> str | None:
    """Which system package the browser tests lack here, or None (selenium is no system
    package: .ci/install installs it, and a test without it fails)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium with a fresh profile; quit and removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tomato-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


RENDERED_IMAGE = """
const part = arguments[0];
const img = Array.from(document.images).find(i => i.src.includes(part));
if (!img) return null;
return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
"""


def wait_for_image(driver: Any, src_part: str, timeout: float = 60) -> tuple[Any, dict]:
    """The first image whose address contains ``src_part`` once it has rendered, and its
    natural size (a broken image has none)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def rendered(d: Any) -> Any:
        state = d.execute_script(RENDERED_IMAGE, src_part)
        return state if state and state["complete"] and state["width"] > 0 else False

    try:
        state = WebDriverWait(driver, timeout, poll_frequency=0.5).until(rendered)
    except TimeoutException:
        images = driver.execute_script("return Array.from(document.images).map(i => i.src)")
        raise AssertionError(
            f"no rendered image with {src_part!r} within {timeout} s on {driver.current_url};"
            f" images: {images}; text: {driver.find_element(By.TAG_NAME, 'body').text[:2000]!r}"
        ) from None
    return driver.find_element(By.CSS_SELECTOR, f'img[src*="{src_part}"]'), state


def click_text(driver: Any, text: str, timeout: float = 30) -> None:
    """Click the (last) element whose whole text is ``text``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    xpath = f"//*[normalize-space(.)='{text}']"
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.XPATH, xpath))
    driver.find_elements(By.XPATH, xpath)[-1].click()
