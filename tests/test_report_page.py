"""The fleet report page (nixify report) in a real headless browser: it loads with no
console error, shows every host of the run report, filtering by role shows only that
role, a failed host's reason is one click away, and a screenshot is left in reports/
for a person to look at. The run report is built here: 15 hosts, one failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from browserkit import chromium, console_errors
from labkit import REPO
from reportkit import FAILED_HOST, FAILED_REASON, FLEET, make_report

from nixify.report.collect import read_reports
from nixify.report.page import PageData, ReleaseTagRow, render_page

SCREENSHOT = REPO / "reports" / "fleet-report.png"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`nixify report --offline` over a reports/ directory holding the run."""
    tmp = tmp_path_factory.mktemp("report")
    reports = tmp / "reports"
    reports.mkdir()
    make_report().write(reports)
    out = tmp / "fleet-report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "nixify.cli", "report", "--offline", "--reports", str(reports),
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text
    assert "http://" not in text and "https://" not in text
    assert "@media print" in text


def test_report_page_in_a_browser(page: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with chromium(1440, 2600) as driver:
        driver.get(page.as_uri())
        assert console_errors(driver) == []
        rows = driver.find_elements(By.CSS_SELECTOR, "#hosts tr.host")
        assert sorted(r.get_attribute("data-host") for r in rows) == sorted(n for n, _ in FLEET)
        assert all(r.is_displayed() for r in rows)
        assert "15 host(s) shown" in driver.find_element(By.ID, "f-count").text

        # filter by role: only that role's hosts remain, in every host-keyed table
        Select(driver.find_element(By.ID, "f-role")).select_by_value("nas")
        shown = [r.get_attribute("data-host") for r in rows if r.is_displayed()]
        assert shown == ["nas-1", "nas-2", "nas-3"]
        lanes = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.tl")
        assert {r.get_attribute("data-role") for r in lanes if r.is_displayed()} == {"nas"}
        Select(driver.find_element(By.ID, "f-role")).select_by_value("")
        assert all(r.is_displayed() for r in rows)

        # filter by state
        Select(driver.find_element(By.ID, "f-state")).select_by_value("rolled-back")
        assert [r.get_attribute("data-host") for r in rows if r.is_displayed()] == [FAILED_HOST]
        Select(driver.find_element(By.ID, "f-state")).select_by_value("")

        # the failed host's reason: hidden, then visible after one click on the host
        detail = driver.find_element(By.ID, f"d-{FAILED_HOST}")
        assert not detail.is_displayed()
        driver.find_element(
            By.CSS_SELECTOR, f"#hosts tr.host[data-host='{FAILED_HOST}'] button.toggle"
        ).click()
        assert detail.is_displayed()
        reason = detail.find_element(By.CSS_SELECTOR, ".reason")
        assert FAILED_REASON in reason.text
        assert "switch-test" in detail.text and "failed" in detail.text

        # sorting by state puts the failed host first (rolled-back < deployed, descending)
        header = driver.find_element(By.XPATH, "//table[@id='hosts']//th[text()='state']")
        header.click()
        header.click()
        first = driver.find_element(By.CSS_SELECTOR, "#hosts tbody tr.host")
        assert first.get_attribute("data-host") == FAILED_HOST
        # its details row moved with it
        following = driver.find_element(By.CSS_SELECTOR, "#hosts tbody tr.host + tr.details")
        assert following.get_attribute("id") == f"d-{FAILED_HOST}"

        causes = driver.find_element(By.ID, "causes").text
        assert "openssl-3.0.15" in causes and "samba-4.20.2" in causes
        assert console_errors(driver) == []
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_render_page_with_status_audit_and_tags(tmp_path: Path) -> None:
    """The pure function, with every source: live status (one host unreachable, one
    drifting), the secrets matrix and release tags; and what was not available."""
    rep = make_report()
    rep.write(tmp_path)
    latest, history, notes = read_reports(tmp_path)
    assert latest is not None and len(history) == 1 and notes == []
    status = {"hosts": [
        {"host": "nas-1", "role": "nas", "reachable": True, "running": rep.hosts["nas-1"].closure,
         "known_good": {"closure": rep.hosts["nas-1"].closure, "tag": "release/nas/x-0d8ff78"},
         "drift": []},
        {"host": "laptop-2", "role": "laptop", "reachable": False, "error": "timed out"},
        {"host": "nas-3", "role": "nas", "reachable": True, "running": "/nix/store/x-old",
         "known_good": {"closure": rep.hosts["nas-3"].closure}, "drift": ["running != known-good"]},
    ]}
    audit = {"hosts": ["nas-1", "nas-2", "laptop-1"], "files": [
        {"path": "nas/smb-credentials.yaml", "mounted_by": ["nas-1"],
         "readable_by": ["nas-1", "laptop-1"]},
        {"path": "common/ntp.yaml", "mounted_by": ["nas-1", "nas-2"], "readable_by": ["nas-1"]},
    ], "problems": ["laptop-1 can read nas/smb-credentials.yaml but does not mount it"]}
    tags = [ReleaseTagRow("release/nas/20261130T041502Z-0d8ff78", "nas", "0d8ff78c9a1e", "x"),
            ReleaseTagRow("release/nas/20261129T041502Z-1a2b3c4", "nas", "1a2b3c4d5e6f", "y")]
    html = render_page(PageData(
        generated="now", latest=latest, history=history, status=status, audit=audit,
        tags=tags, unavailable=["secrets audit: `nixify secrets audit --json` exited 2"],
    ))
    assert "running != known-good" in html
    assert "timed out" in html
    assert "release/nas/20261130T041502Z-0d8ff78" in html and ">2<" in html
    assert "title='laptop-1, nas/smb-credentials.yaml: can read but does not mount" in html
    assert "mounts but cannot read" in html
    assert "Not available:" in html and "exited 2" in html
    assert html.count("class='host'") == 15
