"""Real py-libp2p hosts on loopback (one trio run): Noise only, gossip delivery and validation,
scoring and bans, and the catch-up request/response stream."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from bridges.anvil import get_free_port
from node.p2p.errors import CatchUpError
from node.p2p.host import GossipHost, HostConfig, build_host, get_peer_id
from node.p2p.scoring import PeerScores, ScoreParams

TOPIC = "/clearing/test/1"


class Node:
    def __init__(self, seed: int, peers: list[tuple[bytes, int]], validate=None, scores=None) -> None:
        self.seed = bytes([seed]) * 32
        self.port = get_free_port()
        self.received: list[tuple[bytes, bytes]] = []
        self.requests: list[bytes] = []
        self.peers = peers
        self.validate = validate or (lambda forwarder, origin, data: None)
        self.scores = scores

    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{get_peer_id(self.seed)}"

    def build(self, others: list[Node]) -> GossipHost:
        async def deliver(origin: bytes, data: bytes) -> None:
            self.received.append((origin, data))

        async def serve(peer: str, request: bytes) -> bytes:
            self.requests.append(request)
            return b"answer:" + request

        config = HostConfig(self.seed, f"/ip4/127.0.0.1/tcp/{self.port}", tuple(o.address() for o in others), TOPIC)
        self.host = GossipHost(config, validate=self.validate, deliver=deliver, serve=serve, scores=self.scores)
        return self.host


async def start(nursery: trio.Nursery, nodes: list[Node]) -> None:
    for node in nodes:
        await nursery.start(node.build([o for o in nodes if o is not node]).run)
    with trio.fail_after(30):
        while not all(len(n.host.get_connected_peers()) >= len(nodes) - 1 for n in nodes):
            await trio.sleep(0.1)
    await trio.sleep(1.0)  # subscriptions exchanged


async def wait_until(predicate, timeout: float = 10.0) -> bool:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
    return bool(predicate())


def test_gossip_reaches_every_peer_but_not_the_sender() -> None:
    nodes = [Node(i + 1, []) for i in range(3)]

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, nodes)
            for i in range(20):
                await nodes[0].host.publish(b"m%d" % i)
            assert await wait_until(lambda: all(len(n.received) == 20 for n in nodes[1:]))
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert nodes[0].received == []
    origin = nodes[0].host.peer_id.to_bytes()
    for node in nodes[1:]:
        assert sorted(node.received) == sorted((origin, b"m%d" % i) for i in range(20))


def test_invalid_plaintext_only_peer_cannot_connect() -> None:
    node = Node(1, [])

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.build([]).run)
            key_pair = create_new_key_pair(bytes([9]) * 32)
            plain = build_host(bytes([9]) * 32, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)})
            async with plain.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{get_free_port()}")]):
                with pytest.raises(Exception), trio.fail_after(15):  # noqa: B017 - libp2p raises several types
                    await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.address())))
                assert node.host.get_connected_peers() == []
                # Control: the same plaintext peer does connect to a host with py-libp2p's defaults.
                default_port = get_free_port()
                default = new_host(key_pair=create_new_key_pair(bytes([8]) * 32))
                async with default.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{default_port}")]):
                    address = f"/ip4/127.0.0.1/tcp/{default_port}/p2p/{default.get_id()}"
                    with trio.fail_after(15):
                        await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(address)))
                    assert default.get_id() in plain.get_network().get_connections_map()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_invalid_gossip_is_dropped_and_its_sender_banned() -> None:
    def validate(forwarder: str, origin: bytes, data: bytes) -> str | None:
        return "malformed" if data.startswith(b"bad") else None

    scores = PeerScores(ScoreParams(ban_threshold=-100.0))
    receiver = Node(1, [], validate=validate, scores=scores)
    sender = Node(2, [])

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, [receiver, sender])
            await sender.host.publish(b"good-1")
            for i in range(5):
                await sender.host.publish(b"bad-%d" % i)
            peer = str(sender.host.peer_id)
            assert await wait_until(lambda: scores.is_banned(peer, trio.current_time()))
            await sender.host.publish(b"good-2")
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert [data for _, data in receiver.received] == [b"good-1"]
    assert scores.rejections["malformed"] >= 4


def test_catch_up_stream_round_trip_and_bounds() -> None:
    nodes = [Node(1, []), Node(2, [])]

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, nodes)
            answer = await nodes[0].host.request(nodes[1].host.peer_id.to_bytes(), b"from-epoch-3")
            assert answer == b"answer:from-epoch-3"
            with pytest.raises(CatchUpError):
                await nodes[0].host.request(nodes[1].host.peer_id.to_bytes(), b"x" * 5000)  # above 4 KB
            with pytest.raises(CatchUpError):
                await nodes[0].host.request(get_peer_id(bytes([42]) * 32).to_bytes(), b"nobody")
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert nodes[1].requests == [b"from-epoch-3"]
