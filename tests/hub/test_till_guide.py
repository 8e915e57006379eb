"""docs/hub.md's till integration guide, run verbatim against a running demo; and the near-zone endpoint."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import CartEvent, ShopperLocation, Stamper
from storesense.hub.api import create_app
from storesense.hub.api.context import HubContext
from storesense.hub.auth import TerminalRegistry
from storesense.hub.store import HubStore

CFG = load_store_config(example_store_path())
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "hub.md"


def guide_commands() -> str:
    """The shell block that follows the ``<!-- till-guide -->`` marker in docs/hub.md."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(r"<!-- till-guide -->\s*```sh\n(.*?)```", text, re.S)
    assert found, "docs/hub.md has no <!-- till-guide --> shell block"
    return found.group(1)


def test_the_till_guide_runs_verbatim_against_the_demo():
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    from storesense.demo import run_demo

    pages, results, errors = [], [], []
    ready, release = threading.Event(), threading.Event()

    def keep(result):
        results.append(result)
        ready.set()
        release.wait(60)

    def run():
        try:
            run_demo(CFG, shoppers=4, seed=3, on_page=pages.append, keep_page=keep)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(120), "the demo did not finish"
        assert not errors, errors
        page = pages[0]
        env = {**os.environ, "STORESENSE_HUB": page.url.rstrip("/"), "STORESENSE_TOKEN": page.token}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", guide_commands()], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr + done.stdout
        out = done.stdout
        shopper = re.search(r"session: (\S+)", out).group(1)
        assert shopper in {c.receipt.shopper for c in results[0].checks if c.receipt}
        receipt = next(c.receipt for c in results[0].checks if c.receipt and c.receipt.shopper == shopper)
        assert f"{receipt.total:.2f}" in out.splitlines()[-1] or f"{receipt.total:.2f}" in out
        for line in receipt.lines:
            assert line.name in out
        # the same commands again: that session is settled now, so the guide settles the next one
        again = subprocess.run(["bash", "-euo", "pipefail", "-c", guide_commands()], env=env, capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 0 and re.search(r"session: (\S+)", again.stdout).group(1) != shopper
        # without the token the hub refuses
        refused = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  f"{env['STORESENSE_HUB']}/api/sessions"], capture_output=True, text=True, timeout=30)
        assert refused.stdout == "401"
    finally:
        release.set()
        thread.join(30)


class _AsgiClient:
    """GET against the app in process through httpx's ASGI transport (starlette's TestClient breaks
    on the oldest FastAPI/starlette the project allows together with httpx >= 0.28)."""

    def __init__(self, app):
        self.app = app

    def get(self, url, **kwargs):
        async def call():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://hub") as client:
                return await client.get(url, **kwargs)
        return asyncio.run(call())


def _client(tmp_path, cfg=CFG):
    store = HubStore(str(tmp_path / "hub.db"))
    ctx = HubContext(cfg, store, TerminalRegistry.from_tokens({"till": "t0ken"}))
    return _AsgiClient(create_app(ctx)), store


def test_sessions_near_a_zone_nearest_first(tmp_path):
    client, store = _client(tmp_path)
    f = Stamper("fusion", run_id="near")
    cov = ((0.05, 0.0), (0.0, 0.05))
    for shopper, x, y in (("s-far", 2.0, 6.0), ("s-at", 10.5, 0.8), ("s-close", 10.5, 2.4)):
        store.ingest(f.make(CartEvent, 1.0, shopper=shopper, phase="new", cart_version=0))
        store.ingest(f.make(ShopperLocation, 2.0, shopper=shopper, track="t", x=x, y=y, cov=cov))
    auth = {"Authorization": "Bearer t0ken"}
    near = client.get("/api/sessions/near", params={"zone": "exit", "max_m": 1.5}, headers=auth).json()
    assert [(r["shopper"], r["distance_m"]) for r in near] == [("s-at", 0.0), ("s-close", 0.8)]
    # the demo shop has no checkout zone: the default says so and names the zones
    r = client.get("/api/sessions/near", headers=auth)
    assert r.status_code == 400 and "exit" in r.json()["detail"]
    assert client.get("/api/sessions/near", params={"zone": "nowhere"}, headers=auth).status_code == 404
    assert client.get("/api/sessions/near", params={"zone": "exit"}).status_code == 401
    store.close()
