"""``/docs`` in headless Chromium with the network cut: Swagger UI renders the served
document from the server's own assets, and the page asks nothing of any other host
(no CDN, no validator badge).

It needs a Chromium: ``make browser`` installs Debian's (the test is skipped, saying
so, where there is none).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.support import Api

#: The system's Chromium, else Playwright's own build (``playwright install chromium``).
SYSTEM_BROWSER = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)


@pytest.mark.wire
def test_docs_render_offline_and_ask_no_other_host(api: Api) -> None:
    served = urlsplit(api.base_url).netloc
    document_title = json.loads(api.served_document())["info"]["title"]
    outside: list[str] = []
    local: list[str] = []

    def cut(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == served:
            local.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        executable = SYSTEM_BROWSER or playwright.chromium.executable_path
        if not Path(executable).exists():
            pytest.skip("no Chromium installed: `make browser` installs one")
        browser = playwright.chromium.launch(
            executable_path=executable,
            # Names resolve to nothing but the server's own address: the network is cut
            # below the page too, for whatever the routing would not see.
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        try:
            page = browser.new_page()
            page.route("**/*", cut)
            page.goto(f"{api.base_url}/docs", wait_until="networkidle")
            title = page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
            assert title is not None and title.inner_text().startswith(document_title)
            operations = page.locator(".opblock").count()
            assert operations >= 4, "Swagger UI listed no operations of the served document"
            assert page.locator(".errors-wrapper").count() == 0
        finally:
            browser.close()
    assert outside == []
    assert f"{api.base_url}/openapi.json" in local
    assert any("/docs/assets/" in url for url in local)
