"""Make the screenshots in docs/usage.md: the live plot and overview in the Prefect UI and
the terminal's live view, from a real daemon running a real job.

    .venv/bin/python docs/img/screenshots.py

Needs Debian's chromium and chromium-driver (see .ci/install) and tmux.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration import browser  # noqa: E402
from tests.integration.harness import BIN, DATA, Tomato, kill_leftovers  # noqa: E402

OUT = Path(__file__).resolve().parent
PAYLOAD = {
    "version": "2.2",
    "sample": {"identifier": "demo-sample"},
    "method": [
        {
            "component_role": "psutil",
            "technique_name": "all_info",
            "max_duration": 120,
            "sampling_interval": 0.5,
        },
        {
            "component_role": "counter",
            "technique_name": "count",
            "max_duration": 15,
            "sampling_interval": 0.5,
        },
        {
            "component_role": "counter",
            "technique_name": "random",
            "max_duration": 60,
            "sampling_interval": 0.5,
        },
    ],
}


def latest_artifact_id(api: str, key: str) -> str:
    body = json.dumps({"artifacts": {"key": {"any_": [key]}}}).encode()
    request = urllib.request.Request(
        f"{api}/artifacts/latest/filter", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]["latest_id"]


def terminal_png(command: list[str], path: Path, columns: int = 112, rows: int = 30) -> None:
    """Run ``command`` in tmux, capture its screen with colours, draw it as a PNG."""
    from rich.console import Console
    from rich.text import Text

    session = f"tomato-shot-{time.monotonic_ns()}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(columns), "-y", str(rows)]
        + [" ".join(command) + "; sleep 30"],
        check=True,
    )
    try:
        time.sleep(4)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-e", "-p", "-t", session],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    console = Console(record=True, width=columns, file=open("/dev/null", "w"))
    console.print(Text.from_ansi(screen.rstrip("\n")))
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "terminal.svg"
        svg.write_text(console.export_svg(title=" ".join(["ketchup", *command[1:3]])))
        with browser.chromium(width=1100, height=900) as driver:
            driver.get(svg.as_uri())
            time.sleep(1)
            png = driver.find_element("css selector", "svg").screenshot_as_png
    _crop_margins(png, path)


def _crop_margins(png: bytes, path: Path) -> None:
    """Save ``png`` without the white margins around the terminal window."""
    import io

    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(png)).convert("RGB")
    box = ImageOps.invert(image).getbbox()
    (image.crop(box) if box else image).save(path, optimize=True)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="tomato-screenshots-"))
    lab = Tomato(root)
    try:
        lab.init(DATA / "devices_lab.yml")
        lab.start()
        info = lab.wait_prefect()
        ui, api = info["prefect"]["ui_url"], info["prefect"]["api_url"]
        lab.prepare("pip-psutil", "demo-sample")
        lab.prepare("pip-counter-1", "sample-a")
        lab.ok("tomato", "pipeline", "load", "pip-counter-2", "sample-b")
        jobid = lab.submit(PAYLOAD)
        job = lab.wait_job(jobid, ("r",))
        time.sleep(25)
        terminal_png(
            [str(BIN / "ketchup"), "status", str(jobid), "--watch", *lab.opts],
            OUT / "terminal-watch.png",
        )
        with browser.chromium(width=1400, height=1000) as driver:
            driver.get(f"{ui}/v2/runs/flow-run/{job['flow_run_id']}?tab=Artifacts")
            browser.wait_for_image(driver, f"/plot/{jobid}.svg")
            driver.execute_script("window.scrollTo(0, 380)")
            time.sleep(1)
            driver.save_screenshot(str(OUT / "ui-flow-run-plot.png"))
            plot_id = latest_artifact_id(api, f"tomato-job-{jobid}-plot")
            driver.get(f"{ui}/v2/artifacts/artifact/{plot_id}")
            browser.wait_for_image(driver, f"/plot/{jobid}.svg")
            time.sleep(1)
            driver.save_screenshot(str(OUT / "ui-live-plot.png"))
            overview_id = latest_artifact_id(api, "tomato-pipelines")
            driver.get(f"{ui}/v2/artifacts/artifact/{overview_id}")
            time.sleep(4)
            driver.save_screenshot(str(OUT / "ui-pipelines-overview.png"))
        lab.ok("ketchup", "cancel", str(jobid))
        lab.wait_job(jobid)
    finally:
        lab.stop()
        kill_leftovers(root)
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
