"""The live plot in the Prefect UI, looked at with a real (headless) browser."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration import browser
from tests.integration.harness import Tomato, counter_payload, eventually
from tests.skips import system_mark
from tomato_cli import plots

pytestmark = system_mark(browser.missing())


def test_flow_run_page_shows_the_live_plot_and_it_changes(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-2", "ui-plot")
    payload = counter_payload("ui-plot", duration=60, interval=0.2)
    payload["method"][0]["technique_name"] = "random"
    jobid = lab.submit(payload, cwd=tmp_path)
    job = lab.wait_job(jobid, ("r",))
    ui = lab.ok("tomato", "status")["prefect"]["ui_url"]
    image = f"/plot/{jobid}.svg?run={job['flow_run_id']}"
    # the job makes its plot artifact in the background, after it is running: a page opened
    # before that lists no artifact (a user would reload)
    key = {"artifacts": {"key": {"any_": [f"tomato-job-{jobid}-plot"]}}}
    eventually(
        lambda: httpx.post(f"{lab.api_url}/artifacts/filter", json=key).json(),
        60,
        "the job's plot artifact exists",
    )
    try:
        with browser.chromium() as driver:
            # the default UI (v2): the flow run's Artifacts tab shows the plot in its card
            looks = []
            for _ in range(2):
                driver.get(f"{ui}/v2/runs/flow-run/{job['flow_run_id']}?tab=Artifacts")
                img, size = browser.wait_for_image(driver, image)
                assert size["width"] == plots.SVG_WIDTH_PX  # the plot, not a message
                looks.append(img.screenshot_as_png)
                time.sleep(3)  # more samples, a longer curve
            assert looks[0] != looks[1], "the plot did not change between two looks"
            # the classic UI: its flow run page, Artifacts tab
            driver.get(f"{ui}/runs/flow-run/{job['flow_run_id']}")
            browser.click_text(driver, "Artifacts")
            img, size = browser.wait_for_image(driver, image)
            assert size["width"] == plots.SVG_WIDTH_PX and img.size["width"] > 100
    finally:
        lab.ok("ketchup", "cancel", str(jobid))
        lab.wait_job(jobid)
