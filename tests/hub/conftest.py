"""Fixtures of the hub tests: a page in Debian's headless Chromium.

Needs Debian's Chromium (``apt-get install -y chromium chromium-driver``) and the Python ``playwright``
package (the ``test`` extra), driven through ``executable_path`` (Playwright's own browser download is
never used). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page(tmp_path):
    """A page in Debian's headless Chromium with a fresh user-data dir (1280x760; set_viewport_size to change)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                                "(pip install -e '.[test]')")
    with sync_api.sync_playwright() as pw:
        # launch_persistent_context is how Playwright takes a --user-data-dir of our own
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 760})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
