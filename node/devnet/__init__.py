"""The local devnet: two anvil chains, several validators, demo venues and portfolios."""
