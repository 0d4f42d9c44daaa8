"""Open the service's /docs in headless Chromium, as a user would, with no internet.

    python scripts/docs_check.py BASE_URL SCREENSHOT.png

Checks that Swagger UI renders the operations, then that "Try it out" and "Execute" on
GET /health answer 200, and saves a screenshot of the page. Every file the page loads must come
from BASE_URL: a request elsewhere (a CDN) fails the check. Needs Chromium (/usr/bin/chromium,
or CHROMIUM) and the playwright package (only its driver: no browser download).
"""

import os
import sys
from urllib.parse import urlsplit

from playwright.sync_api import Request, sync_playwright

# The flags headless Chromium needs here: no sandbox as root, no background traffic.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main(base_url: str, screenshot: str) -> None:
    own = urlsplit(base_url).netloc
    elsewhere: list[str] = []

    def note(request: Request) -> None:
        if urlsplit(request.url).netloc not in (own, ""):
            elsewhere.append(request.url)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.on("request", note)
        page.goto(f"{base_url}/docs", wait_until="networkidle")
        operations = page.locator(".opblock-summary-path")
        operations.first.wait_for(timeout=15_000)
        paths = operations.all_inner_texts()
        print(f"/docs shows {len(paths)} operations, e.g. {', '.join(paths[:4])}")
        health = page.locator("#operations-health-ready_health_get")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        status = health.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=15_000)
        code = status.inner_text().strip()
        page.screenshot(path=screenshot, full_page=True)
        browser.close()

    print(f"GET /health from Try it out: {code}; screenshot {screenshot}")
    if elsewhere:
        sys.exit(f"the page loaded files from elsewhere: {elsewhere}")
    if "/health" not in " ".join(paths) or code != "200":
        sys.exit("/docs did not render the operations, or Try it out did not answer 200")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
