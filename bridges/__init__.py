"""Chain bridges: one web3.py adapter per EVM chain (pinned reads, event following, reorg
detection, publishing) plus the Solidity contracts and their compiled artifacts.
Imports only `risk` and `governance`."""
