"""Governance: versioned risk parameter sets (activated like forks), proposals, votes, tally and
validator-set changes. Imports only `risk`."""
