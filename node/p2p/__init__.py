"""The validator network's libp2p layer: Noise-only host, gossipsub topic, signed envelopes, scoring.

`envelope` (operator-key signatures over payload bytes), `scoring` (own peer score table) and `host`
(py-libp2p host, gossipsub configuration, catch-up stream). Nothing persisted.
"""
