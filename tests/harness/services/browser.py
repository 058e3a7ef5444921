"""Headless Chromium driven by Selenium through Debian's chromedriver, fully offline.

The driver and browser paths are given explicitly (``Service(executable_path=...)`` and
``binary_location``) so Selenium Manager never looks anything up or downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.harness.services import ServiceUnavailable

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the setuid sandbox is unavailable
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes renderers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--window-size=1366,900",
)


def _find(env_var: str, candidates: tuple[str, ...]) -> str | None:
    """An executable from ``$env_var`` or the first candidate that exists (absolute or on PATH)."""
    for name in (os.environ.get(env_var), *candidates):
        if not name:
            continue
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver); ServiceUnavailable if either is missing."""
    chromium = _find("DNRT_CHROMIUM", CHROMIUM_CANDIDATES)
    driver = _find("DNRT_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES)
    if not chromium or not driver:
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p]
        raise ServiceUnavailable(
            f"headless browser needs {' and '.join(missing)} (Debian: chromium chromium-driver; "
            "run `bash .ci/install-services` as root)"
        )
    return chromium, driver


@contextmanager
def chrome(page_load_timeout: float = 60) -> Iterator[WebDriver]:
    """A Selenium Chrome WebDriver on headless Chromium with a fresh profile; quit on exit."""
    chromium, driver_path = browser_paths()
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise ServiceUnavailable(f"selenium is not installed: {exc}") from exc
    profile = Path(tempfile.mkdtemp(prefix="dnrt-chrome-"))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    log = profile.parent / f"{profile.name}-chromedriver.log"
    service = Service(executable_path=driver_path, log_output=str(log))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise ServiceUnavailable(f"chromium/chromedriver did not start: {exc.msg}") from exc
    try:
        driver.set_page_load_timeout(page_load_timeout)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        log.unlink(missing_ok=True)
