"""Child process of the crash test: signs and stores epochs in a loop until it is killed.

For each epoch it records the signing decision, then writes the state with its leaves, then prints
`signed E` / `stored E` (flushed) only after the store call returned, so every printed epoch is
committed. Usage: python crash_writer.py DB START LEAVES
"""

from __future__ import annotations

import sys

from node.store import SQLiteStore
from tests.store.factories import make_evidence, make_state


def main() -> None:
    db, start, n_leaves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = SQLiteStore(db)
    epoch = start
    while True:
        state, leaves = make_state(epoch, n_leaves)
        store.record_signing(epoch, state.digest)
        print(f"signed {epoch}", flush=True)
        store.put_signed_state(state, leaves)
        store.put_evidence(make_evidence(epoch, epoch % 4))
        store.put_meta("last_epoch", str(epoch).encode())
        print(f"stored {epoch}", flush=True)
        epoch += 1


if __name__ == "__main__":
    main()
