"""Encrypted keystore files for secret bytes (threshold shares, node keys) and the `Secret` wrapper.

File format (JSON, version 1): `{"version": 1, "kdf": {"name": "scrypt", "n", "r", "p", "salt"},
"cipher": {"name": "chacha20-poly1305", "nonce"}, "metadata": {...}, "ciphertext"}` with hex byte
strings. The key is scrypt(passphrase, random 16-byte salt); the secret is sealed with
ChaCha20-Poly1305 under a random 12-byte nonce, the associated data being the canonical JSON of
everything but the ciphertext, so metadata and KDF parameters cannot be altered unnoticed.

Invariants: files are written atomically (temp file in the same folder, fsync, rename) with mode
0600; loading refuses files (and passphrase files) that the group or others can access; KDF costs
read from a file are bounded; secrets and passphrases live in `Secret`, whose repr and str are
redacted. `erase_keystore` removes (or replaces) a keystore and zeroes its old bytes. Persists
exactly the files it is asked to write.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.crypto.errors import KeystoreError

KEYSTORE_VERSION = 1
DEFAULT_SCRYPT_N = 1 << 15
MIN_SCRYPT_N = 1 << 10
MAX_SCRYPT_N = 1 << 20
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
NONCE_SIZE = 12
MAX_SECRET_SIZE = 1 << 16
MAX_FILE_SIZE = 1 << 20
MAX_PASSPHRASE_SIZE = 4096
PASSPHRASE_ENV = "CLEARING_KEYSTORE_PASSPHRASE"
_AD_PREFIX = b"CLEARING-V1-KEYSTORE"


class Secret:
    """Secret bytes whose repr/str never show the value; compare in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray):
            raise KeystoreError("secret: must be bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret bytes (the only way to read them)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True)
class KeystoreContents:
    """A decrypted keystore: the secret and its (authenticated, non-secret) metadata."""

    secret: Secret
    metadata: Mapping[str, str | int] = field(default_factory=dict)


def validate_private_mode(path: Path, what: str = "keystore") -> None:
    """Raise KeystoreError unless `path` is a regular file without group/other permissions."""
    try:
        st = path.stat()
    except OSError as exc:
        raise KeystoreError(f"{what} {path.name}: cannot stat ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeystoreError(f"{what} {path.name}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeystoreError(
            f"{what} {path.name}: mode {mode:04o} lets group/others access it; run `chmod 600` on it"
        )


def _compute_ad(header: Mapping[str, object]) -> bytes:
    return _AD_PREFIX + json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _derive_key(passphrase: Secret, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.reveal())


def _validate_metadata(metadata: Mapping[str, object]) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, str | int):
            raise KeystoreError(f"metadata.{key}: keys are strings, values strings or integers")
        out[key] = value
    return out


def write_keystore(
    path: Path | str,
    secret: Secret,
    passphrase: Secret,
    metadata: Mapping[str, str | int] | None = None,
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> None:
    """Encrypt `secret` under `passphrase` into `path` atomically, mode 0600."""
    path = Path(path)
    if not 0 < len(secret) <= MAX_SECRET_SIZE:
        raise KeystoreError(f"secret: {len(secret)} bytes outside 1..{MAX_SECRET_SIZE}")
    if not len(passphrase):
        raise KeystoreError("passphrase: empty")
    if not MIN_SCRYPT_N <= scrypt_n <= MAX_SCRYPT_N or scrypt_n & (scrypt_n - 1):
        raise KeystoreError(f"scrypt_n: {scrypt_n} must be a power of two in {MIN_SCRYPT_N}..{MAX_SCRYPT_N}")
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    header: dict[str, object] = {
        "version": KEYSTORE_VERSION,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
        "cipher": {"name": "chacha20-poly1305", "nonce": nonce.hex()},
        "metadata": _validate_metadata(metadata or {}),
    }
    key = _derive_key(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, secret.reveal(), _compute_ad(header))
    document = json.dumps({**header, "ciphertext": ciphertext.hex()}, sort_keys=True, indent=1).encode()
    _write_atomically(path, document)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def erase_keystore(path: Path | str, replace: Callable[[], None] | None = None) -> None:
    """Erase a keystore file: remove it (or let `replace()` atomically write another file at its path),
    then overwrite the old file's bytes with zeros through a descriptor kept open, and sync.

    A crash leaves either the old file or its replacement (never a half-erased keystore at the path).
    Best effort against disk forensics: copy-on-write or flash storage may keep old blocks (the
    keystore is encrypted anyway); backups are the operator's to destroy."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KeystoreError(f"keystore {path.name}: not a regular file")
        size = os.fstat(fd).st_size
        if replace is None:
            os.unlink(path)
        else:
            replace()
        os.pwrite(fd, bytes(size), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_document(path: Path) -> dict:
    validate_private_mode(path)
    if path.stat().st_size > MAX_FILE_SIZE:
        raise KeystoreError(f"keystore {path.name}: larger than {MAX_FILE_SIZE} bytes")
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {path.name}: not readable JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("version") != KEYSTORE_VERSION:
        raise KeystoreError(f"keystore {path.name}: version must be {KEYSTORE_VERSION}")
    return document


def read_keystore_metadata(path: Path | str) -> dict[str, str | int]:
    """The metadata of a keystore without decrypting it (not authenticated until loaded)."""
    document = _read_document(Path(path))
    return _validate_metadata(document.get("metadata", {}))


def load_keystore(path: Path | str, passphrase: Secret) -> KeystoreContents:
    """Decrypt a keystore; KeystoreError on loose mode, malformed file or wrong passphrase."""
    path = Path(path)
    document = _read_document(path)
    try:
        kdf, cipher = document["kdf"], document["cipher"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(cipher["nonce"])
        ciphertext = bytes.fromhex(document["ciphertext"])
        metadata = _validate_metadata(document["metadata"])
        header = {k: document[k] for k in ("version", "kdf", "cipher", "metadata")}
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreError(f"keystore {path.name}: malformed field ({exc})") from exc
    if kdf.get("name") != "scrypt" or cipher.get("name") != "chacha20-poly1305":
        raise KeystoreError(f"keystore {path.name}: unsupported kdf or cipher")
    if not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N or (r, p) != (SCRYPT_R, SCRYPT_P) or len(nonce) != NONCE_SIZE:
        raise KeystoreError(f"keystore {path.name}: kdf.n/r/p or cipher.nonce outside the allowed range")
    try:
        key = _derive_key(passphrase, salt, n, r, p)
        plain = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _compute_ad(header))
    except (InvalidTag, ValueError) as exc:
        raise KeystoreError(f"keystore {path.name}: wrong passphrase or tampered file") from exc
    return KeystoreContents(secret=Secret(plain), metadata=metadata)


def load_passphrase(file: Path | str | None = None, env: str = PASSPHRASE_ENV) -> Secret:
    """The passphrase from `file` (mode 0600, one trailing newline stripped) or else from `env`."""
    if file is not None:
        path = Path(file)
        validate_private_mode(path, "passphrase file")
        if path.stat().st_size > MAX_PASSPHRASE_SIZE:
            raise KeystoreError(f"passphrase file {path.name}: larger than {MAX_PASSPHRASE_SIZE} bytes")
        value = path.read_bytes()
        value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
        if not value:
            raise KeystoreError(f"passphrase file {path.name}: empty")
        return Secret(value)
    raw = os.environ.get(env)
    if raw is None:
        raise KeystoreError(f"passphrase: no passphrase file given and ${env} is not set")
    if not raw:
        raise KeystoreError(f"passphrase: ${env} is empty")
    return Secret(raw.encode())


def load_private_key(path: Path | str, passphrase: Secret) -> bytes:
    """A 32-byte secp256k1 private key from a keystore file: this node's format (`clearingd init`'s
    `keys/operator.json`) or an Ethereum V3 keystore (geth, `eth_account`), told apart by its version.
    Both must be mode 0600; a wrong passphrase raises KeystoreError."""
    path = Path(path)
    validate_private_mode(path)
    if path.stat().st_size > MAX_FILE_SIZE:
        raise KeystoreError(f"keystore {path.name}: larger than {MAX_FILE_SIZE} bytes")
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {path.name}: not readable JSON ({exc})") from exc
    if isinstance(document, dict) and document.get("version") == 3:
        from eth_account import Account

        try:
            key = bytes(Account.decrypt(document, passphrase.reveal().decode()))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise KeystoreError(f"keystore {path.name}: wrong passphrase or malformed V3 keystore ({exc})") from exc
    else:
        key = load_keystore(path, passphrase).secret.reveal()
    if len(key) != 32:
        raise KeystoreError(f"keystore {path.name}: holds {len(key)} bytes, not a 32-byte private key")
    return key
