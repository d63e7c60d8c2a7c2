"""The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`).

Locally the test skips when no browser is installed; in CI (`CI=true`) a missing browser is a
failure — `.ci/run` installs one. The screenshot lands in `test-artifacts/dashboard.png`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tests.integration.helpers import balance, rejections, settle, usage_rows
from tests.integration.ops_helpers import (
    chromium_driver,
    dead_letters,
    find_chromium,
    full_page_screenshot,
    make_balance_busy_dead_letter,
    make_waiting_event,
    serve,
)
from worker.settings import ROOT

TOKEN = "browser-test-token-5d1e"
ARTIFACTS = ROOT / "test-artifacts"


def start_chromium(width: int = 1440, height: int = 1000):
    found = find_chromium()
    if found is None:
        message = "no Chromium found (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must run the browser test (.ci/run installs it)")
        pytest.skip(message)
    return chromium_driver(*found, width=width, height=height)


@pytest.fixture
def chromium() -> Iterator:
    driver = start_chromium()
    yield driver
    driver.quit()


async def test_the_dashboard_requeues_a_dead_letter_the_worker_then_applies(
    chromium, conn, database_url, broker, worker, settings
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    await make_balance_busy_dead_letter(
        conn, database_url, broker, worker, settings, "user_browser", "browser-1", credits=12
    )
    wait = WebDriverWait(chromium, 30)

    with serve(
        settings.model_copy(update={"ops_token": SecretStr(TOKEN), "ops_refresh_s": 1})
    ) as base:
        chromium.get(f"{base}/ops/")
        assert chromium.current_url == f"{base}/ops/login"  # no session yet
        chromium.find_element(By.ID, "token").send_keys(TOKEN)
        chromium.find_element(By.ID, "login").click()

        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "tr.dead-letter")))
        assert row.get_attribute("data-queue") == "usage"
        assert row.find_element(By.CSS_SELECTOR, ".pill").text == "balance_busy"
        assert "browser-1" in row.find_element(By.CSS_SELECTOR, ".preview").text
        wait.until(ec.text_to_be_present_in_element((By.ID, "queue-usage"), "usage"))
        ARTIFACTS.mkdir(exist_ok=True)
        chromium.save_screenshot(str(ARTIFACTS / "dashboard-dead-letter.png"))

        row.find_element(By.CSS_SELECTOR, "button.requeue").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "toast"), "Requeued 1 message"))
        assert dead_letters(settings).counts()["usage"] == 0  # back on its queue
        worker.drain()
        assert await balance(conn, "user_browser") == 88
        assert [r["id"] for r in await usage_rows(conn, "user_browser")] == ["browser-1"]

        wait.until(ec.text_to_be_present_in_element((By.ID, "dead-letters"), "No dead letters."))
        wait.until(
            lambda d: "1 total" in d.find_element(By.ID, "kpis").text
        )  # applied, once flushed
        full_page_screenshot(chromium, ARTIFACTS / "dashboard.png")
        errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors  # no script error, no CSP violation


async def test_the_waiting_panel_releases_and_drops_with_a_reason(
    chromium, conn, broker, worker, settings
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    make_waiting_event(broker, worker, "user_wb1", "wb-1")
    make_waiting_event(broker, worker, "user_wb2", "wb-2")
    wait = WebDriverWait(chromium, 30)

    def event_row(event_id: str):
        return wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'tr.waiting-event[data-id="{event_id}"]')))  # fmt: skip

    def click(event_id: str, button: str) -> None:
        """The panel re-renders every second: a row found just before a refresh is gone by the
        click (stale), so it is found again."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(10):
            try:
                event_row(event_id).find_element(By.CSS_SELECTOR, button).click()
                return
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"the {button} of {event_id} stayed stale")

    with serve(
        settings.model_copy(update={"ops_token": SecretStr(TOKEN), "ops_refresh_s": 1})
    ) as base:
        chromium.get(f"{base}/ops/login")
        chromium.find_element(By.ID, "token").send_keys(TOKEN)
        chromium.find_element(By.ID, "login").click()

        reason = wait.until(ec.presence_of_element_located(
            (By.ID, "waiting-reason-unknown_user")))  # fmt: skip
        assert reason.text.split()[:2] == ["unknown_user", "2"]
        assert "usage: 2" in reason.text
        assert "2 events · oldest" in chromium.find_element(By.ID, "waiting-count").text
        assert "user:user_wb1" in event_row("wb-1").text

        click("wb-1", "button.release")
        wait.until(ec.text_to_be_present_in_element((By.ID, "toast"), "Released 1 event"))
        await settle(worker, conn)  # its user does not exist yet: it waits again
        assert (await conn.fetchval(
            "SELECT times_released FROM worker.waiting WHERE event_id = 'wb-1'")) == 1  # fmt: skip

        click("wb-2", "button.drop")
        prompt = wait.until(ec.alert_is_present())
        assert "wb-2" in prompt.text
        prompt.dismiss()  # no reason: nothing is dropped
        assert await conn.fetchval(
            "SELECT state FROM worker.waiting WHERE event_id = 'wb-2'") == "waiting"  # fmt: skip
        click("wb-2", "button.drop")
        prompt = wait.until(ec.alert_is_present())
        prompt.send_keys("test sign-up, never finished")
        prompt.accept()
        wait.until(ec.text_to_be_present_in_element((By.ID, "toast"), "Dropped 1 event"))
        [rejection] = await rejections(conn, "wb-2")
        assert rejection["detail"] == "dropped by dashboard (session): test sign-up, never finished"
        wait.until(ec.invisibility_of_element_located(
            (By.CSS_SELECTOR, 'tr.waiting-event[data-id="wb-2"]')))  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        full_page_screenshot(chromium, ARTIFACTS / "dashboard-waiting.png")
        errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
