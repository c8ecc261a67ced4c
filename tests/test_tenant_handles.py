"""Tenant handles used the way a request handler uses them: opened in one
expression and dropped, from several threads, with the cyclic collector
running at any point, against a small bound of open files."""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

NOTES = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[alk.Storage]:
    store = alk.Storage.open(tmp_path, max_open_tenants=8, tenant_lease_timeout_s=30)
    yield store
    store.close()


def make_orgs(store: alk.Storage, n: int) -> list[str]:
    owner = store.accounts.create(email="owner@example.com")
    ids = []
    for i in range(n):
        org = store.organizations.create(name=f"Org {i}", slug=f"org-{i}", owner_id=owner.id)
        with store.tenant(org.id) as t:
            t.graph_types.register(NOTES)
            t.graphs.create(name=f"g{i}", type="notes")
        ids.append(org.id)
    return ids


def leased(store: alk.Storage) -> int:
    with store.tenants._cond:
        return sum(h.leases for h in store.tenants._open.values())


def test_one_liners_over_more_tenants_than_the_bound(store: alk.Storage) -> None:
    orgs = make_orgs(store, 30)
    gc.collect()
    gc.disable()  # nothing may depend on the cyclic collector
    try:
        for _ in range(3):
            for i, org in enumerate(orgs):
                names = [g.name for g in store.tenant(org).graphs.list(type="notes")]
                assert names == [f"g{i}"]
                assert leased(store) == 0
                assert store.tenants.open_count <= 8
    finally:
        gc.enable()


def test_objects_read_through_a_dropped_tenant_keep_its_file_open(store: alk.Storage) -> None:
    orgs = make_orgs(store, 10)
    graph = store.tenant(orgs[0]).graphs.list(type="notes")[0]  # the Tenant is gone
    assert leased(store) == 1  # the graph still leases the file
    for org in orgs[1:]:  # every other handle comes and goes
        store.tenant(org).graphs.list(type="notes")
    graph.add_node("n1", type="note")  # its file was never closed
    assert [n.key for n in graph.nodes()] == ["n1"]
    del graph
    assert leased(store) == 0


def test_account_view_tenants_dropped_give_their_lease_back(store: alk.Storage) -> None:
    orgs = make_orgs(store, 12)
    owner = store.accounts.by_email("owner@example.com")
    gc.disable()
    try:
        for org in orgs:
            assert len(store.as_account(owner.id).tenant(org).graphs.list(type="notes")) == 1
    finally:
        gc.enable()
    assert leased(store) == 0


@pytest.mark.timeout(120)
def test_threads_dropping_thousands_of_handles_with_the_collector_running(
    store: alk.Storage,
) -> None:
    orgs = make_orgs(store, 12)
    errors: list[BaseException] = []
    peak_open, peak_fds = 0, 0
    fds_before = open_fds()

    class Holder:
        """A handler's object graph with a cycle: freed by the collector."""

        def __init__(self, tenant: object) -> None:
            self.tenant = tenant
            self.me = self

    def work(seed: int) -> None:
        nonlocal peak_open, peak_fds
        rng = random.Random(seed)
        try:
            for n in range(5000):
                org = rng.choice(orgs)
                kind = rng.random()
                if kind < 0.5:
                    assert len(store.tenant(org).graphs.list(type="notes")) == 1
                elif kind < 0.7:
                    Holder(store.tenant(org))
                elif kind < 0.85:
                    with store.tenant(org).transaction() as tx:  # the tenant is dropped
                        time.sleep(0)  # let other threads evict what they can
                        tx.execute("SELECT count(*) FROM nodes")
                else:
                    with store.tenant(org) as t:
                        t.db.query("SELECT 1")
                if n % 97 == 0:
                    gc.collect()
                if n % 50 == 0:
                    peak_open = max(peak_open, store.tenants.open_count)
                    peak_fds = max(peak_fds, open_fds())
        except BaseException as exc:
            errors.append(exc)

    old = gc.get_threshold()
    gc.set_threshold(50, 2, 2)
    # What the process held before (the rest of the suite's modules and
    # objects) is frozen out of the collector's way: the collections stay
    # the test's own, not a walk over everything earlier tests loaded.
    gc.freeze()
    started = time.monotonic()
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        stuck = [t for t in threads if t.is_alive()]
        assert not stuck, "a thread is stuck: a finalizer waited for a lock it holds"
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
    took = time.monotonic() - started
    assert not errors, errors[:3]
    gc.collect()
    assert leased(store) == 0
    assert peak_open <= 8
    # Each open tenant file holds a few descriptors (file, -wal, -shm, the
    # readers'); 8 files' worth above where we started, never 12.
    assert peak_fds - fds_before <= 8 * 6, (peak_fds, fds_before)
    assert took < 100
