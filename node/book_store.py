"""Persistence of the chain books: one SQLite file (WAL) with the latest blob of each chain's book.

A restarted node loads each chain's book and moves it forward with the logs since its block instead of
reading every view again (`bridges.book_reader.BookSync`); a book whose block is no longer canonical is
rebuilt by the cold path, and so is a blob of an older format (`BookFormatOutdated`, logged). The blob is `ChainBook.to_bytes()` (no undo history). Writes replace the row
of the chain in one transaction; the file is created with mode 0600. Thread-safe (one connection per call).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from bridges.book import BookFormatOutdated, ChainBook

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS books (
    chain_id INTEGER PRIMARY KEY, block_number INTEGER NOT NULL, block_hash BLOB NOT NULL,
    saved_at REAL NOT NULL, content_hash BLOB NOT NULL, blob BLOB NOT NULL)"""


class BookStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    def save(self, book: ChainBook) -> None:
        if book.block_number is None or book.block_hash is None:
            raise ValueError(f"book of chain {book.chain_id}: no block to save")
        blob = book.to_bytes()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO books VALUES (?, ?, ?, ?, ?, ?)",
                       (book.chain_id, book.block_number, book.block_hash, time.time(), book.content_hash(), blob))

    def load(self, chain_id: int) -> ChainBook | None:
        with self._connect() as db:
            row = db.execute("SELECT blob, content_hash FROM books WHERE chain_id = ?", (chain_id,)).fetchone()
        if row is None:
            return None
        try:
            book = ChainBook.from_bytes(row[0])
        except BookFormatOutdated as exc:
            log.warning("stored book refused, the chain is read again", extra={"chain_id": chain_id, "reason": str(exc)})
            return None
        if book.content_hash() != row[1]:
            return None  # a damaged blob: the cold path rebuilds the book
        return book
