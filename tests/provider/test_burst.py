"""A burst of jobs at one DVM: none lost, and the provider's memory does not grow with them.

The provider runs ``dvm_script.py`` (no-op handler) in its own process, so its resident set
can be read from /proc without the relay's and the customers' memory in it. Customers
publish every request at once, half in each dialect; every request must get exactly one
result, and a second burst must leave the provider's memory where the first left it.

Speed is not asserted here (``python -m benchmarks provider`` measures it); the throughput
seen is printed, for the record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.job import MODERN_KIND
from dvmkit.relay.pool import RelayPool, Subscription
from dvmkit.relay.server import Relay

from .dvm_script import CATEGORY, KIND
from .subprocess_dvm import DVMProcess

BURST = 3000
CUSTOMERS = 10  # the default per-customer limit would answer a single customer RATE_LIMITED
WAIT = 60.0  # a bound on one burst, not a pace
#: Allowed RSS growth between the end of the first burst and the end of the second. After
#: the first burst the interpreter's pools, SQLite's page cache and the latency ring are
#: warm; what a second burst adds is what the provider keeps per job. By design that is
#: only the relay pool's de-dupe window (about 0.3 KB per request id, bounded at 50,000
#: ids): about 1 MB per burst of 3,000. Keeping a job's request, result and bookkeeping
#: (well over 2 KB) would add 6 MB or more; 4 MB sits between the two, with room for
#: allocator noise (measured growth: 0.1 to 1.5 MB).
MAX_GROWTH = 4 << 20


def _burst(customers: list[Keys], tag: str) -> list[Event]:
    requests = []
    for n in range(BURST):
        customer = customers[n % len(customers)]
        if n % 2:
            event = sign_event(customer, kind=KIND, tags=[["i", f"{tag} {n}", "text"]])
        else:
            topic = [["t", CATEGORY], ["category", CATEGORY]]
            event = sign_event(customer, kind=MODERN_KIND, content=f"{tag} {n}", tags=topic)
        requests.append(event)
    return requests


async def _run_burst(pool: RelayPool, sub: Subscription, requests: list[Event]) -> float:
    """Publish every request at once; wait until each has its one result; return the jobs/s."""
    want = {r.id for r in requests}
    results: dict[str, str] = {}
    start = time.perf_counter()
    async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tg:
        for request in requests:
            tg.create_task(pool.publish(request, timeout=WAIT))
        async for event in sub:
            assert event.tag_value("status") != "error", event.tags
            if event.kind != KIND + 1000 and event.tag_value("status") != "success":
                continue
            job = event.tag_value("e")
            assert job in want, event.tags
            assert results.setdefault(job, event.id) == event.id  # one result id per job
            if len(results) == len(want):
                break
    return len(requests) / (time.perf_counter() - start)


async def test_burst_loses_no_job_and_memory_stays_flat(tmp_path: Path) -> None:
    keys = Keys.generate()
    customers = [Keys.generate() for _ in range(CUSTOMERS)]
    bursts = [_burst(customers, f"burst {b}") for b in range(2)]
    answers = {
        "kinds": [KIND + 1000, MODERN_KIND, 7000],
        "#p": [c.public_key for c in customers],
    }
    async with Relay(port=0) as relay:
        proc = DVMProcess(
            relays=[relay.url], db=tmp_path / "jobs.sqlite3", keys=keys, log=tmp_path / "dvm.log"
        )
        async with (
            proc,
            RelayPool(relays=[relay.url], max_queue=BURST * 4) as pool,
            pool.subscribe(answers) as sub,
        ):
            await asyncio.wait_for(sub.wait_stored(), WAIT)
            idle = proc.rss_bytes()
            rates, rss, cpu = [], [], []
            for requests in bursts:
                before = proc.cpu_seconds()
                rates.append(await _run_burst(pool, sub, requests))
                cpu.append(proc.cpu_seconds() - before)
                rss.append(proc.rss_bytes())
            assert await proc.terminate() == 0, proc.stderr()
    mib = [round(r / (1 << 20), 1) for r in (idle, *rss)]
    per_cpu = [round(BURST / c) if c else None for c in cpu]
    print(
        f"\nburst of {BURST}: {[round(r) for r in rates]} jobs/s end to end;"
        f" provider {per_cpu} jobs per CPU second; provider RSS MiB idle, after each {mib}"
    )
    assert rss[1] - rss[0] < MAX_GROWTH, f"RSS grew from {mib[1]} to {mib[2]} MiB"
