"""RRA-1 portfolio margin engine: a pure, deterministic functional core.

Imports only the standard library, numpy and scipy; no I/O, clock, globals or logging.
"""
