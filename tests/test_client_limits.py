"""Who a client is behind proxies, and connection counts shared by processes."""

from __future__ import annotations

import mmap
import os

import pytest

import settings as settings_module
from web.server.client_limits import ROW_BYTES, ConnectionCounts, client_of

PROXIES = settings_module.load({"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}).trusted_proxies


@pytest.mark.parametrize("peer, forwarded_for, client", [
    ("198.51.100.7", "", "198.51.100.7"),  # no proxy
    ("198.51.100.7", "10.9.9.9", "198.51.100.7"),  # an untrusted peer names nobody
    ("192.0.2.1", "", "192.0.2.1"),  # a proxy that names no client
    ("192.0.2.1", "203.0.113.5", "203.0.113.5"),
    ("192.0.2.1", "1.1.1.1, 203.0.113.5", "203.0.113.5"),  # the client's own header is not believed
    ("192.0.2.1", "203.0.113.5, 10.1.2.3", "203.0.113.5"),  # two trusted hops
    ("192.0.2.1", "10.1.2.3, 10.4.5.6", "10.1.2.3"),  # all trusted: the farthest
    ("192.0.2.1", "203.0.113.5, not-an-address", "192.0.2.1"),  # garbage: blame the proxy
    ("192.0.2.1", "2001:db8::1", "2001:db8::1"),
])
def test_the_client_is_the_nearest_untrusted_address(peer, forwarded_for, client):
    assert client_of(peer, forwarded_for, PROXIES) == client


def test_counts_are_summed_over_processes_and_a_new_process_clears_its_row():
    memory = mmap.mmap(-1, 2 * ROW_BYTES)
    first = ConnectionCounts(memory, 0, cap=3)
    assert first.enter("203.0.113.5") and first.enter("203.0.113.5")
    pid = os.fork()
    if pid == 0:  # another worker process, sharing the memory
        second = ConnectionCounts(memory, 1, cap=3)
        os._exit(0 if second.enter("203.0.113.5") and not second.enter("203.0.113.5") else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert not first.enter("203.0.113.5")  # 2 here + 1 there
    assert first.enter("203.0.113.6")  # another address has its own count
    ConnectionCounts(memory, 1, cap=3)  # the other process's replacement
    assert first.enter("203.0.113.5")
    first.leave("203.0.113.5")
