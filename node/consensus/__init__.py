"""Threshold-signed epoch consensus: the epoch state machine, gossip validation, catch-up, publishing.

`machine` (phases and the one transition table), `engine` (the trio epoch loop), `validation`
(checks on every gossiped envelope), `catchup` (request/response of missed signed states), `inputs`
(the InputSource port), `publishing` (the publisher port and round-robin schedule), `digest` (state
digest and proto conversions). Persistence goes through the injected `node.ports.Store`.
"""
