"""Photograph the dashboard of a running server for the docs (docs/dashboard.png).

Run after `make demo` (or on any home with verdicts), with the server of that home up:

    INSPECTION_HOME=<home> inspection serve --port 8123 &
    python -m tools.dashboard_screenshot --url http://127.0.0.1:8123/ --key <a manager key> --out docs/dashboard.png

It drives Debian's Chromium through Playwright (as the browser tests do), signs in with the key, waits for the
first refresh and the charts to settle, and saves the whole page.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SETTLE_MS = 1500  # the charts animate in after the data arrives


def photograph(url: str, key: str, out: Path, width: int = 1400) -> None:
    """Sign in at `url` with `key` and save a full-page PNG of the dashboard to `out`."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(url)
        page.get_by_test_id("key-input").fill(key)
        page.get_by_test_id("key-submit").click()
        page.wait_for_function("() => document.getElementById('last-updated').dataset.updatedAt", timeout=30_000)
        page.wait_for_timeout(SETTLE_MS)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the dashboard, e.g. http://127.0.0.1:8123/")
    parser.add_argument("--key", required=True, help="a manager (or QA) API key")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    photograph(args.url, args.key, args.out, args.width)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
