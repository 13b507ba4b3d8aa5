"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

A real ``llmagentos dashboard`` process serves a runs folder holding a finished hybrid
run, a broken run, a run whose process died, a run still going and a durable run
waiting for approval. Each view is screenshotted into ``screenshots/`` of the test's
temporary folder (or ``$LLMAGENTOS_SCREENSHOTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmagentos._processes import start_server, stop_processes
from llmagentos.durable.journal import Journal
from tests.dashboard.runs import ROOT, ledger_config, start_cli, taxi_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (scripts/install-chromium.sh installs it)",
)
# Without the background-networking flags Chromium keeps dialling Google's hosts, which
# this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("LLMAGENTOS_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def dashboard(runs_root: Path) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process, url = start_server(["llmagentos", "dashboard", str(runs_root)], env=env)
    yield url
    stop_processes(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page raised: {errors}"


def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _drawn(page: Any, selector: str) -> None:
    """Wait until Plotly has drawn the figure in ``selector``."""
    page.wait_for_selector(f"{selector} .main-svg", timeout=15_000)


def test_the_runs_page_shows_every_run_and_what_is_wrong(dashboard, page, screenshots) -> None:
    page.goto(dashboard + "/")
    rows = {
        row.get_attribute("data-run"): row.inner_text()
        for row in page.query_selector_all("#runs tr[data-run]")
    }
    assert "completed" in rows["maze"]
    assert "broken" in rows["broken"] and "results.json cannot be read" in rows["broken"]
    assert "died" in rows["nested/died"] and "gone without finishing" in rows["nested/died"]
    _shot(page, screenshots, "runs")


def test_a_finished_run_drills_down_to_a_step_and_its_explanation(
    dashboard, page, screenshots, runs_root
) -> None:
    page.goto(dashboard + "/")
    page.click("#runs a[href^='run?id=maze']")
    page.wait_for_selector("#phases")
    _drawn(page, "[data-figure=curve]")
    phases = page.inner_text("#phases")
    results = json.loads((runs_root / "maze" / "results.json").read_text())
    assert f"{results['train']['mean_return']:.2f}" in phases
    assert f"{results['baseline']['train']['mean_return']:.2f}" in phases
    legend = page.inner_text("[data-figure=curve]")
    assert "maze_hybrid" in legend and "baseline" in legend  # the agent against its baseline
    assert "stand-in:wrong30" in page.inner_text("#kernel-backends")
    _shot(page, screenshots, "run")

    page.click("#episodes a >> text='0'")
    page.wait_for_selector("#steps")
    _drawn(page, "[data-figure=waterfall]")
    steps = page.query_selector_all("#steps tr")[1:]
    trace = [json.loads(x) for x in (runs_root / "maze" / "trace.jsonl").read_text().splitlines()]
    assert len(steps) == sum(1 for r in trace if r["episode"] == 0)
    assert "invoke_agent" in page.inner_text("[data-figure=waterfall]")
    _shot(page, screenshots, "episode")

    first = next(r for r in trace if r["episode"] == 0 and r["details"]["source"] == "llm")
    page.click(f"#steps a >> text='{first['step']}'")
    page.wait_for_selector("#explanation")
    assert page.inner_text("#observation") == first["observation"]
    assert "The model proposed" in page.inner_text("#proposal")
    assert page.inner_text("#options tr.chosen").startswith(
        first["details"]["action_names"][first["action"]]
    )
    prompt = page.inner_text(".model-call .prompt >> nth=-1")
    assert prompt == first["observation"]
    assert json.loads(page.inner_text(".model-call .reply"))["action"]
    assert "Q(s, " in page.inner_text("#learned")
    _drawn(page, "[data-figure=waterfall]")
    _shot(page, screenshots, "step")


def test_a_running_run_updates_as_it_goes(dashboard, page, screenshots, runs_root) -> None:
    out = runs_root / "live"
    process = start_cli("run", str(taxi_config(out)), "--quiet")
    try:
        deadline = time.monotonic() + 60
        while not (out / "status.json").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        page.goto(dashboard + "/run?id=live")
        assert "running" in page.inner_text("h1")
        before = page.inner_text("#phases tr[data-phase=train]")
        # The page fetches itself again while the run is live: the episodes count moves.
        page.wait_for_function(
            "before => document.querySelector('#phases tr[data-phase=train]').innerText !== before",
            arg=before,
            timeout=20_000,
        )
        _drawn(page, "[data-figure=curve]")
        _shot(page, screenshots, "running")
    finally:
        stop_processes(process)
    process.kill() if process.poll() is None else None
    page.goto(dashboard + "/run?id=live")
    assert page.inner_text("h1").split()[-1] in ("interrupted", "died")


def test_approving_on_the_page_lets_the_run_go_on(dashboard, page, screenshots, runs_root) -> None:
    out = runs_root / "ledger"
    paused = start_cli("run", str(ledger_config(out)), "--quiet")
    assert paused.wait(120) == 3, paused.stdout.read() if paused.stdout else ""  # 3: paused
    page.goto(dashboard + "/run?id=ledger")
    card = page.wait_for_selector(".approval[data-status=pending]")
    call = card.inner_text()
    assert 'ledger.refund {"entry":"x"}' in call
    _shot(page, screenshots, "approval")

    card.query_selector("input[name=note]").fill("checked on the page")
    card.query_selector("button.approve").click()
    page.wait_for_load_state()
    deadline = time.monotonic() + 120
    while "completed" not in page.inner_text("h1"):
        assert time.monotonic() < deadline, (out / "resume.log").read_text()
        time.sleep(0.5)
        page.reload()
    assert "approved by dashboard: checked on the page" in page.inner_text("#approvals")
    _shot(page, screenshots, "approved")
    with Journal(out / "run.db", create=False) as journal:
        (decided,) = journal.approvals()
        trail = [entry.kind for entry in journal.audit_trail()]
        steps = journal.step_count()
    assert (decided.status, decided.decided_by, decided.note) == (
        "approved", "dashboard", "checked on the page",
    )  # fmt: skip
    assert {"approval_requested", "approved", "completed"} <= set(trail)
    assert steps == 60  # it went on past the paused step to the episode's end


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gateway with one upstream service, ``echo``, with no key store (its admin
    routes then answer loopback clients, as the dashboard on the same machine is)."""
    upstream, upstream_url = start_server(["llmagentos.gateway.testing"], port_flag=None)
    config = tmp_path_factory.mktemp("gateway") / "gateway.toml"
    config.write_text(f'[gateway]\nhealth_interval = 0\n\n[[services]]\nname = "echo"\n'
                      f'replicas = ["{upstream_url}"]\n')  # fmt: skip
    env = {**os.environ, "LLMAGENTOS_PRINCIPAL_SECRET": "dashboard-browser-test-secret-0123456789"}
    try:
        process, url = start_server(["llmagentos", "gateway", str(config)], env=env)
    except BaseException:
        stop_processes(upstream)
        raise
    yield url
    stop_processes(process, upstream)


def test_the_gateway_page_shows_services_replicas_and_traffic(
    gateway, runs_root, page, screenshots
) -> None:
    import httpx

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    process, url = start_server(
        ["llmagentos", "dashboard", str(runs_root), "--gateway", gateway], env=env
    )
    try:
        page.goto(url + "/gateway")
        row = page.wait_for_selector("#services tr[data-service=echo]")
        assert "closed" in row.inner_text()  # the breaker
        statuses = [httpx.get(gateway + "/echo/echo", timeout=10).status_code for _ in range(20)]
        statuses.append(httpx.get(gateway + "/echo/status/500", timeout=10).status_code)
        assert statuses == [200] * 20 + [500]
        # The page refreshes itself: the requests and the error show up without a reload.
        page.wait_for_function(
            "() => document.querySelector('#services tr[data-service=echo] "
            "[data-col=requests]').innerText === '21'",
            timeout=20_000,
        )
        assert page.inner_text("#services tr[data-service=echo] [data-col=errors]") == "1"
        assert "1 / 1" in page.inner_text("#services")  # one replica, available
        _shot(page, screenshots, "gateway")
    finally:
        stop_processes(process)
