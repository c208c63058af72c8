"""Devnet node homes: a dealerless DKG among N validators (run in one process: devnet only), one
home per validator created by `clearingd init` (encrypted keystores, mode 0600), and each home's
config.toml (validator set, chains with their contract addresses, libp2p bootstrap, API, metrics).

A JOINING home (`init_home` without a share file) belongs to an operator who is not in the genesis
set: its config's `[validator_set]` carries the genesis key set's public data explicitly
(`get_public_set_values`), since it has no share keystore to take them from; it joins the set
when governance adds it and the old holders reshare to it.

Used by `clearingd devnet` and by the compose file's one-shot setup (`docker/devnet_setup.py`).
Persists: `<out>/passphrase` (mode 0600, random) and `<out>/v<i>/` per validator.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVNET_SCRYPT_N = 1 << 12  # keystores of a throw-away devnet: cheap to open


class DevnetError(RuntimeError):
    """The devnet could not be set up (DKG failure, init failure, bad option)."""


@dataclass(frozen=True)
class NodeHome:
    index: int
    path: Path
    address: str  # operator EVM address
    peer_id: str
    api_address: str = ""
    metrics_address: str = ""


def write_passphrase(out: Path) -> Path:
    path = out / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(24) + "\n")
    return path


def init_home(home: Path, index: int, pass_file: Path, network_id: int, share_file: Path | None = None,
              scrypt_n: int = DEVNET_SCRYPT_N) -> NodeHome:
    """`clearingd init` of one validator home (with its threshold share when `share_file` is given)."""
    from node.cli.keys import describe_keystore
    from node.cli.main import main as clearingd

    argv = ["init", "--home", str(home), "--index", str(index), "--passphrase-file", str(pass_file),
            "--scrypt-n", str(scrypt_n), "--network-id", str(network_id), "--json", "--force"]
    if share_file is not None:
        argv += ["--share-keystore", str(share_file)]
    with contextlib.redirect_stdout(io.StringIO()):
        code = clearingd(argv)
    if code != 0:
        raise DevnetError(f"clearingd init failed for validator {index} at {home}")
    return NodeHome(index, home, describe_keystore(home / "keys" / "operator.json")["address"],
                    describe_keystore(home / "keys" / "p2p.json")["peer_id"])


def create_homes(out: Path, n: int, t: int, network_id: int = 1,
                 scrypt_n: int = DEVNET_SCRYPT_N) -> tuple[list[NodeHome], bytes]:
    """DKG + `clearingd init` per validator; returns the homes in index order and the group key (G2, 96 B)."""
    from node.crypto.dkg_bus import run_dkg_in_process
    from node.crypto.keyshare import write_share_keystore
    from node.crypto.keystore import load_passphrase

    if not 1 <= t <= n:
        raise DevnetError(f"threshold: need 1 <= {t} <= validators {n}")
    out.mkdir(parents=True, exist_ok=True)
    pass_file = write_passphrase(out)
    outcome = run_dkg_in_process(n, t)
    if outcome.failures or len(outcome.results) != n:
        raise DevnetError(f"DKG failed: {outcome.failures}")
    passphrase = load_passphrase(pass_file)
    homes = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for i in range(n):
            share_file = Path(tmp) / f"share{i}.json"
            write_share_keystore(share_file, outcome.results[str(i + 1)], passphrase, scrypt_n=scrypt_n)
            homes.append(init_home(out / f"v{i}", i, pass_file, network_id, share_file, scrypt_n))
    group_key = outcome.results["1"].keyset.group_public_key
    return homes, group_key


def get_public_set_values(share_file: Path, pass_file: Path) -> dict[str, Any]:
    """`[validator_set]` values of the key set in `share_file` (public data only, hex): what a joining
    home, which holds no share keystore, must be told explicitly, the `KeySetRecord` (public
    commitments, to check the reshare's deals) included. Operators are left to the caller."""
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_passphrase

    ks = load_share_keystore(share_file, load_passphrase(pass_file)).keyset
    return {"keyset_id": ks.keyset_id, "threshold": ks.threshold, "group_key": "0x" + ks.group_public_key.hex(),
            "public_shares": ["0x" + ks.get_public_share(i).hex() for i in sorted(ks.holders)],
            "keyset_record": ks.to_record().SerializeToString(deterministic=True).hex()}


def write_configs(homes: Sequence[NodeHome], chains: Sequence[dict[str, Any]], genesis_time: float,
                  epoch_period_s: float, *, p2p_addrs: Sequence[tuple[str, int]],
                  api_listen: Sequence[str], metrics_listen: Sequence[str], inputs: str = "margin",
                  governance: dict[str, Any] | None = None, operators: Sequence[str] | None = None,
                  joining_set: dict[str, Any] | None = None) -> list[NodeHome]:
    """Write every home's config.toml; `chains` are `node.config.ChainEndpoint` fields as dicts.

    `operators`: the genesis set (default: every home's operator). A home without `keys/share.json`
    is a joining one: its `[validator_set]` gets `joining_set` (`get_public_set_values`) as well.
    Returns the homes with their API and metrics addresses filled in.
    """
    from node.config import ChainEndpoint, load_config, render_config_toml

    operators = list(operators) if operators is not None else [h.address for h in homes]
    chain_cfgs = tuple(ChainEndpoint(**c) for c in chains)
    done = []
    for i, home in enumerate(homes):
        config = load_config(home.path, env={})
        values = {s: dict(v) for s, v in config.values.items()}
        values["validator_set"].update(operators=operators)
        if not (home.path / "keys" / "share.json").exists():
            if joining_set is None:
                raise DevnetError(f"validator {home.index}: no share keystore and no joining_set to configure")
            values["validator_set"].update(joining_set)
        values["consensus"].update(genesis_time=genesis_time, epoch_period_s=epoch_period_s, inputs=inputs,
                                   home_chain_id=chain_cfgs[0].chain_id if chain_cfgs else 0)
        ip, port = p2p_addrs[i]
        values["p2p"].update(listen=f"/ip4/{ip}/tcp/{port}", bootstrap=[
            f"/ip4/{p2p_addrs[j][0]}/tcp/{p2p_addrs[j][1]}/p2p/{h.peer_id}" for j, h in enumerate(homes) if j != i])
        values["api"].update(listen=api_listen[i])
        values["metrics"].update(listen=metrics_listen[i])
        if governance:
            values["governance"].update(governance)
        (home.path / "config.toml").write_text(render_config_toml(values, chain_cfgs))
        os.chmod(home.path / "config.toml", 0o600)
        done.append(NodeHome(home.index, home.path, home.address, home.peer_id, api_listen[i], metrics_listen[i]))
    return done
