"""Per-client token buckets for the public API (bounded: at most `max_clients` buckets, least
recently used evicted).

A client is the peer host of the connection (`ipv4:1.2.3.4:port` -> `ipv4:1.2.3.4`), so reconnecting
does not refill a bucket. `rate <= 0` disables limiting. Thread-safe; nothing is persisted.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_CLIENTS = 10_000


def get_client_key(peer: str) -> str:
    """Strip the port from a gRPC peer string; UNIX and unknown peers map to themselves."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, _, _port = peer.rpartition(":")
        return host
    return peer


class ClientRateLimiter:
    """Token bucket per client: `rate` tokens/s, capacity `burst`."""

    def __init__(self, rate: float, burst: float, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def try_acquire(self, key: str, cost: float = 1.0) -> float:
        """0.0 when admitted, else the seconds to wait before `cost` tokens are available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (cost - tokens) / self.rate
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
