#!/usr/bin/env python3
"""Memory of ``python -m game serve`` and its tabs: the numbers the README gives.

Starts ``serve`` on a free loopback port, opens TABS tabs in a headless chromium (tests/cdp.py),
starts a game in each, waits for every first turn to be saved, and reads from /proc the
resident (RSS) and proportional (PSS: shared pages split between the processes that map them)
memory of the server and of each tab's process. Run from the repository root:

    .venv/bin/python scripts/serve-memory.py                  # the embedded model
    .venv/bin/python scripts/serve-memory.py --scripted       # tabs without a model
    .venv/bin/python scripts/serve-memory.py --json -- --model ~/models/x.gguf --n-ctx 4096

Words after ``--`` are passed to ``serve`` (model options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from game.bench.table import format_table
from tests.cdp import Browser, find_chromium
from tests.test_serve_browser import open_tab, start_server, stop_server


def memory_mib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0]) // 1024
    return values["Rss"], values["Pss"]


async def measure(tabs: int, scripted: bool, serve_words: list[str]) -> dict:
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("error: chromium is not installed (make browser)")
    tmp = Path(tempfile.mkdtemp(prefix="serve-memory-"))
    served = start_server(tmp, "--saves-per", "shared", *serve_words, scripted=scripted)
    browser = Browser(chromium)
    await browser.start()
    try:
        for count in range(1, tabs + 1):
            tab = await open_tab(browser, served)
            served.wait_log(r"start screen shown", count=count)
            await tab.press("Enter")
        deadline = time.monotonic() + 600
        while len(list(served.saves.glob("*.json"))) < tabs:
            if time.monotonic() > deadline:
                raise SystemExit("error: the tabs did not finish their first turns in 10 minutes")
            await asyncio.sleep(0.5)
        pids = sorted(
            {int(m.group(1)) for m in served.wait_log(r"browser tab (\d+): saves per", count=tabs)}
        )
        rows = [{"process": "serve", "pid": served.process.pid}]
        rows += [{"process": f"tab {n}", "pid": pid} for n, pid in enumerate(pids, 1)]
        for row in rows:
            row["rss_mib"], row["pss_mib"] = memory_mib(row["pid"])
        return {"backend": "scripted" if scripted else "model", "serve": serve_words, "rows": rows}
    finally:
        await browser.close()
        stop_server(served)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=2, help="tabs to open (default 2)")
    parser.add_argument("--scripted", action="store_true", help="tabs without a model")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("serve", nargs="*", help="words for serve, after --")
    args = parser.parse_args()
    result = asyncio.run(measure(args.tabs, args.scripted, args.serve))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"backend: {result['backend']}  serve options: {' '.join(args.serve) or '-'}")
        rows = [[r["process"], r["pid"], r["rss_mib"], r["pss_mib"]] for r in result["rows"]]
        print(format_table(["process", "pid", "RSS MiB", "PSS MiB"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
