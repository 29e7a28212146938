"""The web console in a real headless Chromium, as a responder works an incident.

Sign in with the responder token, open the board, open an incident (declared through the
API), acknowledge it, add a note, send an update from a template, resolve it: each step shows
in the page's timeline and in the API's (`GET /v1/incidents/{id}/timeline`). Then the
metrics, an auditor's read-only view, a producer refused, the board following the log live,
and phone width. Every page is saved as a screenshot under `tests/browser/artifacts/`;
assertions are on content, never on pixels.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait
from tests_support import TOKENS

from browser.support import HEIGHT, WIDTH, Console
from services.auth import Role

WAIT_S = 20


Shot = Callable[[str], Path]


@pytest.fixture
def shot(browser: WebDriver, artifacts: Path) -> Shot:
    """Saves the whole page (not only the window) as `artifacts/<name>.png`."""

    def take(name: str) -> Path:
        width = browser.get_window_size()["width"]
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(int(height) + 120, 400), 6000))
        path = artifacts / f"{name}.png"
        try:
            assert browser.save_screenshot(str(path)), path
        finally:
            browser.set_window_size(width, HEIGHT)
        return path

    return take


def _wait(browser: WebDriver, condition: Any) -> Any:
    return WebDriverWait(browser, WAIT_S).until(condition)


def _sign_in(browser: WebDriver, console: Console, role: Role, path: str = "/") -> None:
    browser.delete_all_cookies()
    browser.get(console.url + path)
    _wait(browser, shown.presence_of_element_located((By.ID, "token")))
    browser.find_element(By.ID, "token").send_keys(TOKENS[role])
    browser.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in'] button").click()


def _declare(console: Console, title: str, severity: str = "P1") -> str:
    with console.api() as api:
        answer = api.post(
            "/v1/incidents", json={"title": title, "severity": severity, "services": ["checkout"]}
        )
        assert answer.status_code == 201, answer.text
        seq = answer.json()["events"][-1]["seq"]
        assert api.get("/v1/incidents", params={"wait_for": seq}).status_code == 200
        incident_id: str = answer.json()["incident_id"]
        return incident_id


def _api_events(console: Console, incident_id: str) -> list[dict[str, Any]]:
    with console.api(Role.AUDITOR) as api:
        answer = api.get(f"/v1/incidents/{incident_id}/timeline")
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events


def _text(browser: WebDriver, element_id: str) -> str:
    """The text of a page part, read in one script: the live script may swap the part in
    between two WebDriver commands (a stale element), never in the middle of a script."""
    text = browser.execute_script(f"return document.getElementById('{element_id}').innerText;")
    return str(text)


def _timeline(browser: WebDriver) -> str:
    return _text(browser, "timeline-rows")


def _click(browser: WebDriver, by: str, locator: str) -> None:
    """Clicks an element of a live part, finding it again if the part was swapped meanwhile."""
    for attempt in range(5):
        element = _wait(browser, shown.element_to_be_clickable((by, locator)))
        try:
            element.click()
            return
        except (StaleElementReferenceException, WebDriverException):
            if attempt == 4:
                raise


def _open(browser: WebDriver, label: str) -> WebElement:
    """Opens the button bar's form named `label` and returns it."""
    summary = browser.find_element(By.XPATH, f"//details/summary[normalize-space()='{label}']")
    summary.click()
    form: WebElement = summary.find_element(By.XPATH, "following-sibling::form")
    return form


def _done(browser: WebDriver, what: str) -> None:
    _wait(browser, shown.text_to_be_present_in_element((By.ID, "done"), f"{what}: recorded."))


def test_a_responder_works_an_incident_from_the_console(
    browser: WebDriver, console: Console, shot: Shot
) -> None:
    incident_id = _declare(console, "Checkout 5xx in eu-west-1")

    browser.delete_all_cookies()
    browser.get(console.url + "/")
    _wait(browser, shown.presence_of_element_located((By.ID, "token")))
    assert browser.current_url.startswith(console.url + "/console/sign-in")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    assert browser.find_element(By.CSS_SELECTOR, "label[for='token']").text == "Token"
    shot("01-sign-in")

    browser.find_element(By.ID, "token").send_keys(TOKENS[Role.RESPONDER])
    browser.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in'] button").click()
    _wait(browser, shown.element_to_be_clickable((By.LINK_TEXT, incident_id)))
    board = _text(browser, "board")
    assert "Checkout 5xx in eu-west-1" in board and "P1" in board
    assert "responder" in browser.find_element(By.CSS_SELECTOR, ".who").text
    shot("02-board")

    _click(browser, By.LINK_TEXT, incident_id)
    _wait(browser, shown.title_contains(incident_id))
    head = _text(browser, "head")
    assert "Checkout 5xx in eu-west-1" in head and "not yet" in head  # unacknowledged
    assert "incident.declared" in _timeline(browser)
    shot("03-incident")

    browser.find_element(By.CSS_SELECTOR, "#form-ack button").click()
    _done(browser, "Acknowledge")
    assert "incident.acknowledged" in _timeline(browser)
    assert "not yet" not in _text(browser, "head")
    shot("04-acknowledged")

    note = _open(browser, "Add note")
    Select(note.find_element(By.NAME, "kind")).select_by_value("decision")
    note.find_element(By.NAME, "text").send_keys("Rolling back checkout to v41")
    note.find_element(By.CSS_SELECTOR, "button").click()
    _done(browser, "Add note")
    assert "Rolling back checkout to v41" in _timeline(browser)
    shot("05-note")

    comms = _open(browser, "Send comms")
    Select(comms.find_element(By.NAME, "template")).select_by_value("update")
    comms.find_element(By.NAME, "next_update_at").send_keys("30m")
    comms.find_element(By.NAME, "var.actions").send_keys("rolled back checkout to v41")
    comms.find_element(By.CSS_SELECTOR, "button").click()
    _done(browser, "Send comms")
    timeline = _timeline(browser)
    assert "INCIDENT UPDATE: Checkout 5xx in eu-west-1" in timeline
    assert "Actions taken: rolled back checkout to v41" in timeline
    shot("06-comms-update")

    escalate = _open(browser, "Escalate")
    escalate.find_element(By.NAME, "level").send_keys("99")
    escalate.find_element(By.CSS_SELECTOR, "button").click()
    error = _wait(browser, shown.visibility_of_element_located((By.ID, "escalate-error")))
    assert "level" in error.text and "invalid" in error.text
    invalid = browser.find_element(By.ID, "escalate-level")
    assert invalid.get_attribute("aria-invalid") == "true"
    assert invalid.get_attribute("value") == "99"
    shot("07-error-inline")

    browser.get(f"{console.url}/incidents/{incident_id}")
    resolve = _open(browser, "Resolve")
    resolve.find_element(By.NAME, "summary").send_keys("Rollback to v41 fixed it")
    resolve.find_element(By.CSS_SELECTOR, "button").click()
    _done(browser, "Resolve")
    assert "incident.resolved" in _timeline(browser)
    assert "· resolved " in _text(browser, "head")
    assert browser.find_elements(By.ID, "form-ack") == []
    shot("08-resolved")

    # Each step is in the API's timeline too, as the responder's, from the web.
    events = _api_events(console, incident_id)
    mine = {e["type"]: e for e in events if e["source"] == "web"}
    assert set(mine) == {
        "incident.acknowledged",
        "incident.note_added",
        "comms.sent",
        "incident.resolved",
    }
    assert {(e["actor"], e["principal"]) for e in mine.values()} == {("responder", "responder")}
    assert mine["incident.note_added"]["body"]["text"] == "Rolling back checkout to v41"
    assert mine["incident.note_added"]["body"]["kind"] == "decision"
    assert mine["comms.sent"]["body"]["template"] == "update"
    assert mine["incident.resolved"]["body"]["summary"] == "Rollback to v41 fixed it"
    assert not any(e["type"] == "incident.escalated" for e in events)  # the refused one

    browser.find_element(By.LINK_TEXT, "Postmortem draft").click()
    _wait(browser, shown.presence_of_element_located((By.CSS_SELECTOR, "article.markdown h1")))
    article = browser.find_element(By.CSS_SELECTOR, "article.markdown").text
    assert "Checkout 5xx in eu-west-1" in article
    assert browser.find_elements(By.CSS_SELECTOR, "article.markdown table")
    shot("09-postmortem-draft")

    browser.get(f"{console.url}/incidents/{incident_id}")
    _click(browser, By.CSS_SELECTOR, "#timeline-rows tbody tr:first-child a")
    banner = _wait(browser, shown.visibility_of_element_located((By.CLASS_NAME, "asof-banner")))
    assert "As the log knew it at" in banner.text
    past = _timeline(browser)
    assert "incident.declared" in past and "incident.acknowledged" not in past
    assert browser.find_elements(By.ID, "actions") == []  # the past is read only
    shot("10-as-of")


def _backfill(console: Console) -> None:
    """Two incidents of past months, worked as the runbooks time them (one acknowledged late)."""
    script = [
        ("P1", "2026-09-10T10:00:00Z", "2026-09-10T10:20:00Z", "2026-09-10T12:00:00Z"),
        ("P2", "2026-10-05T08:00:00Z", "2026-10-05T08:10:00Z", "2026-10-05T09:00:00Z"),
    ]
    seqs = []
    with console.api() as api:
        for severity, declared, acked, resolved in script:
            body = {"title": f"Backfilled {severity}", "severity": severity}
            answer = api.post("/v1/incidents", json=body | {"occurred_at": declared})
            on = f"/v1/incidents/{answer.json()['incident_id']}"
            for verb, at in (("ack", acked), ("resolve", resolved)):
                done = api.post(f"{on}/{verb}", json={"occurred_at": at})
                assert done.status_code == 200, done.text
                seqs.append(done.json()["events"][-1]["seq"])
        assert api.get("/v1/incidents", params={"wait_for": max(seqs)}).status_code == 200


def test_metrics_page_draws_charts_with_titles(
    browser: WebDriver, console: Console, shot: Shot
) -> None:
    _backfill(console)
    _sign_in(browser, console, Role.RESPONDER, "/console/metrics")
    _wait(browser, shown.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    named = browser.find_elements(By.CSS_SELECTOR, "svg.chart > title")
    titles = [title.get_attribute("textContent") for title in named]
    assert titles == [
        "MTTA by severity",
        "MTTR by severity",
        "MTTA and MTTR by month",
        "Breaches by month",
    ]
    for chart in browser.find_elements(By.CSS_SELECTOR, "svg.chart"):
        assert chart.get_attribute("role") == "img"
        assert chart.get_attribute("aria-labelledby")
    bars = {
        bar.get_attribute("textContent")
        for bar in browser.find_elements(By.CSS_SELECTOR, "svg.chart rect > title")
    }
    # Detection to acknowledgement: 20 min in September (late for a P1), 10 min for the P2.
    expected = {"MTTA mean, 2026-09: 20m 00s", "mean, P2: 10m 00s", "MTTR mean, 2026-10: 1h 00m"}
    assert expected <= bars, bars
    assert "ack, 2026-09: 1" in bars, bars
    shot("11-metrics")


def test_an_auditor_sees_no_command_buttons_and_a_producer_cannot_sign_in(
    browser: WebDriver, console: Console, shot: Shot
) -> None:
    incident_id = _declare(console, "Payments latency", "P2")
    _sign_in(browser, console, Role.AUDITOR, f"/incidents/{incident_id}")
    _wait(browser, shown.title_contains(incident_id))
    assert browser.find_elements(By.ID, "actions") == []
    assert browser.find_elements(By.CSS_SELECTOR, "form[action^='/console/incidents/']") == []
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Read only: role auditor does not drive incidents." in body
    shot("12-auditor-read-only")

    browser.find_element(By.CSS_SELECTOR, "form[action='/console/sign-out'] button").click()
    _wait(browser, shown.presence_of_element_located((By.ID, "token")))
    browser.get(f"{console.url}/incidents/{incident_id}")  # the session has ended
    _wait(browser, shown.presence_of_element_located((By.ID, "token")))

    _sign_in(browser, console, Role.PRODUCER)
    error = _wait(browser, shown.visibility_of_element_located((By.ID, "signin-error")))
    assert "role producer cannot use the console" in error.text
    shot("13-producer-refused")


def test_the_board_follows_the_log_without_a_reload(
    browser: WebDriver, console: Console, shot: Shot
) -> None:
    _sign_in(browser, console, Role.RESPONDER)
    _wait(browser, shown.presence_of_element_located((By.ID, "board")))
    browser.execute_script("window.notReloaded = true;")
    incident_id = _declare(console, "Queue backlog growing", "P0")
    _wait(browser, lambda _: incident_id in _text(browser, "board"))
    assert browser.execute_script("return window.notReloaded === true;")
    shot("14-board-live")


def test_the_console_fits_a_phone(browser: WebDriver, console: Console, shot: Shot) -> None:
    _sign_in(browser, console, Role.RESPONDER)
    incident_id = _declare(console, "Login errors on mobile", "P2")
    browser.set_window_size(390, HEIGHT)
    try:
        for path, name in [
            ("/", "15-board-phone"),
            (f"/incidents/{incident_id}", "16-incident-phone"),
        ]:
            browser.get(console.url + path)
            _wait(browser, shown.presence_of_element_located((By.ID, "main")))
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth;"
            )
            assert overflow <= 0, (path, overflow)
            shot(name)
        labels = browser.find_elements(By.CSS_SELECTOR, "#actions summary")
        assert [s.text for s in labels][:3] == ["Change severity", "Set status", "Set phase"]
    finally:
        browser.set_window_size(WIDTH, HEIGHT)


def test_pages_send_a_browser_to_sign_in_while_the_api_answers_401(console: Console) -> None:
    """Outside the browser: the pages redirect to the sign-in page, the JSON API stays JSON."""
    with httpx.Client(base_url=console.url, timeout=10) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
        api = anonymous.get("/v1/incidents")
        assert api.status_code == 401 and api.json()["error"] == "unauthorized"
