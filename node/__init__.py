"""Composition root of the clearing node: config, keys, libp2p host and gossip, epoch consensus,
threshold crypto, store, gRPC server, CLI and metrics. May import every other package."""
