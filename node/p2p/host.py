"""The node's libp2p host: Noise-only TCP transport, one gossipsub topic, a catch-up stream protocol.

Configuration that py-libp2p 0.8.1 does not get right by default (see shared/STACK_NOTES.md):
- security: Noise ONLY (the default also offers TLS, secio and plaintext);
- gossipsub: heartbeat 1 s, degree/degree_low/degree_high set, spam limit raised to the real rate;
- queues: the per-peer outbound queue and the subscription channel (32 each, dropping silently) are
  raised to `QUEUE_SIZE`; they stay bounded;
- own messages (which come back on the subscription) are filtered out before delivery;
- every validator is a direct peer (origin sends to all), relays forward to `RELAY_FANOUT` peers only,
  and exactly one connection per pair (the smaller peer id dials): two crossing dials left messages
  stuck in py-libp2p's pending queues for seconds (measured: p50 3 s and 20 % loss at 7 nodes,
  against 14 ms and no loss with one connection per pair).
Inbound gossip runs through `validate(forwarder, origin, data) -> reason | None` as a topic validator:
rejected messages are neither delivered nor forwarded, and cost the forwarder score (`PeerScores`);
a peer that falls below the ban threshold is blacklisted and disconnected. Bootstrap peers are
re-dialled every `RECONNECT_INTERVAL_S` while not connected. Nothing persisted; the p2p identity is
derived from the configured 32-byte seed so peer ids are stable across restarts.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_noise_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID as GOSSIPSUB_PROTOCOL_ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from node.p2p.envelope import MAX_ENVELOPE_BYTES
from node.p2p.errors import CatchUpError
from node.p2p.scoring import PeerScores

log = logging.getLogger(__name__)

CATCHUP_PROTOCOL = TProtocol("/clearing/catchup/1.0.0")
QUEUE_SIZE = 4096  # outbound RPCs per peer and messages per subscription
MAX_MESSAGES_PER_TOPIC_PER_SECOND = 500.0
RECONNECT_INTERVAL_S = 2.0
DIRECT_CONNECT_DISABLED_S = 10**6  # the host's own reconnect loop dials instead
NEGATIVE_DIAL_CACHE_S = 1.0
RELAY_FANOUT = 1  # peers a relayed (not own) message is forwarded to
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 4 * 1024
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

Validate = Callable[[str, bytes, bytes], str | None]
Deliver = Callable[[bytes, bytes], Awaitable[None]]
Serve = Callable[[str, bytes], Awaitable[bytes]]


class ValidatorGossipSub(GossipSub):
    """Gossipsub for a small, fully connected validator set.

    Every validator is a direct peer, so an origin sends its own message to all of them at once; a
    relay forwards a message it received to at most `relay_fanout` random peers (instead of all),
    which keeps delivery robust to a broken link without the n^2 copies a full flood costs.
    """

    relay_fanout = RELAY_FANOUT

    def _get_peers_to_send(self, topic_ids, msg_forwarder, origin, msg_id=None):  # type: ignore[no-untyped-def]
        peers = list(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        if self.pubsub is not None and origin != self.pubsub.my_id and len(peers) > self.relay_fanout:
            peers = random.sample(peers, self.relay_fanout)
        yield from peers


def _raise_libp2p_bounds() -> None:
    """Raise py-libp2p's silently-dropping 32-entry queues to QUEUE_SIZE (module-level defaults)."""
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = QUEUE_SIZE
    pubsub_module.RpcQueue = functools.partial(RpcQueue, max_size=QUEUE_SIZE)  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class HostConfig:
    """What the host needs: identity seed, addresses and the topic."""

    p2p_seed: bytes  # 32 bytes; ed25519 identity
    listen: str  # multiaddr, e.g. /ip4/127.0.0.1/tcp/4001
    bootstrap: tuple[str, ...]  # full multiaddrs with /p2p/<peer id>
    topic: str
    heartbeat_interval_s: float = 1.0
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12


def get_peer_id(p2p_seed: bytes) -> ID:
    """The libp2p peer id derived from a 32-byte seed."""
    return ID.from_pubkey(create_new_key_pair(p2p_seed).public_key)


def build_host(p2p_seed: bytes, sec_opt: dict | None = None):
    """A libp2p host with the given identity; Noise is the only security transport unless overridden."""
    key_pair = create_new_key_pair(p2p_seed)
    if sec_opt is None:
        sec_opt = {NOISE_PROTOCOL_ID: NoiseTransport(key_pair,
                                                     noise_privkey=create_noise_key_pair().private_key)}
    return new_host(key_pair=key_pair, sec_opt=sec_opt)


async def _read_exact(stream, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = await stream.read(size - len(buf))
        if not chunk:
            raise CatchUpError(f"stream: closed after {len(buf)} of {size} bytes")
        buf += chunk
    return buf


async def read_frame(stream, max_bytes: int) -> bytes:
    """One length-prefixed frame (4-byte big-endian length); refuses frames above max_bytes."""
    size = int.from_bytes(await _read_exact(stream, 4), "big")
    if size > max_bytes:
        raise CatchUpError(f"frame: {size} bytes exceeds {max_bytes}")
    return await _read_exact(stream, size)


async def write_frame(stream, data: bytes) -> None:
    await stream.write(len(data).to_bytes(4, "big") + data)


class GossipHost:
    """One running host + gossipsub; start with `run(task_status=...)` inside a nursery."""

    def __init__(self, config: HostConfig, validate: Validate, deliver: Deliver, serve: Serve,
                 scores: PeerScores | None = None, clock: Callable[[], float] = trio.current_time) -> None:
        self.config = config
        self.validate = validate
        self.deliver = deliver
        self.serve = serve
        self.scores = scores or PeerScores()
        self.clock = clock
        self.peer_id = get_peer_id(config.p2p_seed)
        self.host: Any = None
        self.pubsub: Pubsub | None = None
        self._nursery: trio.Nursery | None = None
        self.messages_out = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.bytes_in = 0
        self._bootstrap = [info_from_p2p_addr(multiaddr.Multiaddr(a)) for a in config.bootstrap]

    def _topic_validator(self, forwarder: ID, msg) -> bool:
        peer = str(forwarder)
        if forwarder == self.peer_id:
            return True
        if self.scores.is_banned(peer, self.clock()):
            return False
        if len(msg.data) > MAX_ENVELOPE_BYTES:
            reason: str | None = "oversize"
        else:
            reason = self.validate(peer, bytes(msg.from_id), bytes(msg.data))
        if reason is None:
            self.scores.process_accepted(peer)
            return True
        self.penalize(peer, reason)
        return False

    def penalize(self, peer: str, reason: str) -> None:
        """Lower a peer's score; blacklist and disconnect it when it crosses the ban threshold."""
        log.info("rejected gossip", extra={"peer": peer, "reason": reason, "score": self.scores.get_score(peer)})
        if self.scores.process_rejected(peer, reason, self.clock()) and self.pubsub is not None:
            log.warning("banning peer", extra={"peer": peer, "score": self.scores.get_score(peer)})
            peer_id = ID.from_base58(peer)
            # Not `Pubsub.add_to_blacklist`: its teardown raises KeyError (and stops the node) when
            # the peer's stream is already gone. The blacklist set alone drops the peer's messages.
            self.pubsub.blacklisted_peers.add(peer_id)
            if self._nursery is not None:
                self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: ID) -> None:
        assert self.host is not None
        with trio.move_on_after(CONNECT_TIMEOUT_S):
            try:
                await self.host.disconnect(peer_id)
            except Exception as exc:  # already gone: nothing to do
                log.debug("disconnect failed", extra={"peer": str(peer_id), "reason": str(exc)})

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        _raise_libp2p_bounds()
        cfg = self.config
        host = self.host = build_host(cfg.p2p_seed)
        # Validators are few and known: each is a gossipsub direct peer, so every message goes to
        # every validator at once instead of waiting for mesh grafting or IHAVE/IWANT rounds.
        gossipsub = ValidatorGossipSub([GOSSIPSUB_PROTOCOL_ID], direct_peers=self._bootstrap,
                              direct_connect_initial_delay=DIRECT_CONNECT_DISABLED_S,
                              direct_connect_interval=DIRECT_CONNECT_DISABLED_S, degree=cfg.degree, degree_low=cfg.degree_low,
                              degree_high=cfg.degree_high,
                              heartbeat_interval=cfg.heartbeat_interval_s,  # type: ignore[arg-type]  # a float works
                              heartbeat_initial_delay=0.1,
                              max_messages_per_topic_per_second=MAX_MESSAGES_PER_TOPIC_PER_SECOND)
        self.pubsub = Pubsub(host, gossipsub)
        # py-libp2p refuses to redial a peer for 60 s after one failed dial ("negative cache"); a
        # restarted validator must be redialled within RECONNECT_INTERVAL_S.
        negative_cache = getattr(host.get_network(), "_negative_peer_cache", None)
        if negative_cache is not None:
            negative_cache._ttl = NEGATIVE_DIAL_CACHE_S
        host.set_stream_handler(CATCHUP_PROTOCOL, self._handle_catchup)
        async with host.run(listen_addrs=[multiaddr.Multiaddr(cfg.listen)]), \
                background_trio_service(self.pubsub), background_trio_service(gossipsub):
            await self.pubsub.wait_until_ready()
            self.pubsub.set_topic_validator(cfg.topic, self._topic_validator, False)
            subscription = await self.pubsub.subscribe(cfg.topic)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reconnect_loop)
                task_status.started(self)
                async for msg in subscription:
                    if ID(msg.from_id) == self.peer_id:
                        continue
                    self.messages_in += 1
                    self.bytes_in += len(msg.data)
                    await self.deliver(bytes(msg.from_id), bytes(msg.data))

    async def _reconnect_loop(self) -> None:
        assert self.host is not None and self.pubsub is not None
        while True:
            for info in self._bootstrap:
                if not self.is_dialer_for(info.peer_id) or info.peer_id in self.pubsub.blacklisted_peers:
                    continue
                if self.host.get_network().get_connections(info.peer_id):
                    continue
                with trio.move_on_after(CONNECT_TIMEOUT_S):
                    try:
                        await self.host.connect(info)
                    except Exception as exc:  # any dial failure: retried next round
                        log.debug("dial failed", extra={"peer": str(info.peer_id), "reason": str(exc)})
            await trio.sleep(RECONNECT_INTERVAL_S)

    def is_dialer_for(self, peer: ID) -> bool:
        """One connection per pair: the peer with the smaller id dials (two crossing dials confuse pubsub)."""
        return self.peer_id.to_bytes() < peer.to_bytes()

    async def publish(self, data: bytes) -> None:
        assert self.pubsub is not None
        self.messages_out += 1
        self.bytes_out += len(data)
        await self.pubsub.publish(self.config.topic, data)

    def get_connected_peers(self) -> list[ID]:
        assert self.host is not None
        return list(self.host.get_network().get_connections_map())

    async def _handle_catchup(self, stream) -> None:
        peer = str(stream.muxed_conn.peer_id)
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                request = await read_frame(stream, MAX_REQUEST_BYTES)
                response = await self.serve(peer, request)
                await write_frame(stream, response)
                await stream.close()
        except Exception as exc:  # a broken or slow requester must not hurt the node
            log.info("catch-up request failed", extra={"peer": peer, "reason": str(exc)})
            with trio.move_on_after(1):
                await stream.reset()

    @property
    def peer_id_bytes(self) -> bytes:
        return self.peer_id.to_bytes()

    async def request(self, peer: bytes, data: bytes) -> bytes:
        """Send one catch-up request to a peer (binary peer id) and return its answer (bounded)."""
        assert self.host is not None
        peer_id = ID(peer)
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                stream = await self.host.new_stream(peer_id, [CATCHUP_PROTOCOL])
                try:
                    await write_frame(stream, data)
                    return await read_frame(stream, MAX_RESPONSE_BYTES)
                finally:
                    with trio.move_on_after(1):
                        await stream.close()
        except trio.TooSlowError as exc:
            raise CatchUpError(f"peer {peer_id}: no answer within {REQUEST_TIMEOUT_S}s") from exc
        except CatchUpError:
            raise
        except Exception as exc:
            raise CatchUpError(f"peer {peer_id}: {exc}") from exc
