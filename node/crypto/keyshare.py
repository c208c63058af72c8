"""Store a holder's threshold share (a `DkgResult`) in an encrypted keystore file, and load it back.

The secret is the 32-byte big-endian share; the metadata carries the kind, key-set id, holder index
and the hex `KeySetRecord` (public commitments), all authenticated by the keystore's AEAD. Loading
checks that the share matches the holder's public share derived from the commitments, so a file
from another key set or holder is refused. A RETIRED share keystore (`retire_share_keystore`, kind
`clearing-retired-share`) keeps only the public part (key-set id, index, record) once the node erased
the share of a key set that a newer one replaced: it loads as a `DkgResult` without share, so the
node still starts from it. Persists the one keystore file it is asked to write.
"""

from __future__ import annotations

from pathlib import Path

from node.crypto import bls
from node.crypto.dealing import decode_scalar, encode_scalar
from node.crypto.dkg import DkgResult, KeySet
from node.crypto.errors import DkgError, KeystoreError
from node.crypto.keystore import (
    DEFAULT_SCRYPT_N,
    Secret,
    erase_keystore,
    load_keystore,
    read_keystore_metadata,
    write_keystore,
)
from node.pb.clearing.dkg.v1 import dkg_pb2

SHARE_KIND = "clearing-threshold-share"
RETIRED_SHARE_KIND = "clearing-retired-share"


def write_share_keystore(
    path: Path | str, result: DkgResult, passphrase: Secret, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> None:
    """Encrypt a holder's share and key-set record into `path` (mode 0600)."""
    if result.index is None or result.share is None:
        raise KeystoreError("result: holds no share (not a recipient of the session)")
    record = result.keyset.to_record(index=result.index).SerializeToString(deterministic=True)
    metadata: dict[str, str | int] = {
        "kind": SHARE_KIND,
        "keyset_id": result.keyset.keyset_id,
        "index": result.index,
        "keyset_record": record.hex(),
    }
    write_keystore(path, Secret(encode_scalar(result.share)), passphrase, metadata, scrypt_n=scrypt_n)


def load_share_keystore(path: Path | str, passphrase: Secret) -> DkgResult:
    """Decrypt a share keystore; KeystoreError unless the share matches its recorded public share."""
    contents = load_keystore(path, passphrase)
    meta = contents.metadata
    if meta.get("kind") not in (SHARE_KIND, RETIRED_SHARE_KIND):
        raise KeystoreError(f"metadata.kind: {meta.get('kind')!r} is not {SHARE_KIND!r}")
    try:
        record = dkg_pb2.KeySetRecord.FromString(bytes.fromhex(str(meta["keyset_record"])))
        keyset = KeySet.from_record(record)
        if meta["kind"] == RETIRED_SHARE_KIND:
            return DkgResult(keyset=keyset, index=record.index, share=None)
        share = decode_scalar(contents.secret.reveal(), "share")
    except (KeyError, ValueError, DkgError) as exc:
        raise KeystoreError(f"metadata.keyset_record: malformed ({exc})") from exc
    index = record.index
    if bls.public_key(share) != keyset.get_public_share(index):
        raise KeystoreError(
            f"share: does not match holder {index}'s public share in key set {keyset.keyset_id}"
        )
    return DkgResult(keyset=keyset, index=index, share=share)


def retire_share_keystore(path: Path | str, passphrase: Secret, retired_by: int) -> None:
    """Replace a share keystore by its public part (kind `clearing-retired-share`, no share) and zero
    the old file's bytes; `retired_by` is the key set that replaced it."""
    meta = read_keystore_metadata(path)
    if meta.get("kind") != SHARE_KIND:
        raise KeystoreError(f"metadata.kind: {meta.get('kind')!r} is not {SHARE_KIND!r}")
    retired = {**meta, "kind": RETIRED_SHARE_KIND, "retired_by_keyset": retired_by}
    erase_keystore(path, lambda: write_keystore(path, Secret(f"retired by key set {retired_by}".encode()),
                                                passphrase, retired))
