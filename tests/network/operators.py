"""Operators as separate OS identities for the network tests.

Each operator gets its own folder (home, passphrase file, open log) and, when the tests run as root,
its own uid (`BASE_UID + index`): every `clearingd` command of operator i runs through `setpriv` as
that uid, and its folder is mode 0700 owned by it, so the kernel refuses any other operator's process
access to its home, share keystore included (`assert_barrier` shows it). Independently of the uids,
every process runs with `tests/network/audit` on PYTHONPATH: its `sitecustomize` logs each file the
process opens (Python's `open` audit event: `open`, `os.open`, `Path.read_bytes`, ...) to the
operator's `opens/` folder, and `find_foreign_opens` lists any path of another operator's folder
that a process opened. Without root the uid barrier is absent (one uid) and only the open logs speak.
`clearingd` (on the operators' PATH, and for `Operator.clearingd`) runs on an interpreter every uid can
execute (`find_operator_python`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AUDIT_DIR = Path(__file__).resolve().parent / "audit"
BASE_UID = 61000
PASSPHRASE = "operator passphrase"


def is_world_executable(path: str) -> bool:
    """Whether any uid can reach and run `path` (every folder above it searchable by others)."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o001 for p in (real, *real.parents))


def find_operator_python() -> tuple[str, list[str]] | None:
    """An interpreter other uids can run and the folders to add to its path: this one, or the system's
    interpreter of the same version with this environment's packages (a virtualenv may point into a
    home folder other users cannot enter); None when there is none."""
    if is_world_executable(sys.executable):
        return sys.executable, []
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.path.exists(system) and is_world_executable(system):
        return system, [sysconfig.get_paths()["purelib"]]
    return None


OPERATOR_PYTHON = find_operator_python()
SEPARATE_UIDS = os.geteuid() == 0 and shutil.which("setpriv") is not None and OPERATOR_PYTHON is not None
PYTHON, PYTHON_PATH = OPERATOR_PYTHON if SEPARATE_UIDS and OPERATOR_PYTHON else (sys.executable, [])


@dataclass
class Operator:
    index: int  # 1-based (share index)
    root: Path  # the operator's own folder
    uid: int | None  # None: same uid as the test

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pass_file(self) -> Path:
        return self.root / "pass"

    @property
    def opens(self) -> Path:
        return self.root / "opens"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}
        env |= {"HOME": str(self.root), "PYTHONPATH": os.pathsep.join([str(AUDIT_DIR), str(REPO), *PYTHON_PATH]),
                "CLEARING_TEST_OPEN_LOG_DIR": str(self.opens), "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": f"{self.root.parent / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        return env | (extra or {})

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run as this operator's uid (when the tests run as root)."""
        if self.uid is None:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--", *argv]

    def clearingd(self, *args: str) -> list[str]:
        return self.wrap([PYTHON, "-m", "node.cli.main", *args])

    def run(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.clearingd(*args), cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env=self.env(env))

    def run_json(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> dict[str, Any]:
        out = self.run(*args, timeout=timeout, env=env)
        assert out.returncode == 0, f"operator {self.index}: clearingd {' '.join(args)}\n{out.stderr}\n{out.stdout}"
        return json.loads(out.stdout)

    def popen(self, *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.clearingd(*args), cwd=self.root, env=self.env(env), stdout=log.open("ab"),
                                stderr=subprocess.STDOUT)

    def give(self, path: Path) -> Path:
        """Hand a file or folder the test wrote to this operator (its uid owns it)."""
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path


def make_operators(n: int) -> tuple[Path, list[Operator]]:
    """A base folder (traversable, not listable by others) with one private folder per operator."""
    base = Path(tempfile.mkdtemp(prefix="clearing-operators-"))
    os.chmod(base, 0o711)
    (base / "bin").mkdir(mode=0o755)
    os.chmod(base / "bin", 0o755)
    wrapper = base / "bin" / "clearingd"  # `clearingd` on the operators' PATH, run by PYTHON
    wrapper.write_text(f'#!/bin/sh\nexec {PYTHON} -m node.cli.main "$@"\n')
    os.chmod(wrapper, 0o755)
    public = base / "public"
    public.mkdir(mode=0o755)
    os.chmod(public, 0o755)
    operators = []
    for i in range(1, n + 1):
        op = Operator(i, base / f"op{i}", BASE_UID + i if SEPARATE_UIDS else None)
        op.root.mkdir(mode=0o700)
        op.opens.mkdir(mode=0o700)
        fd = os.open(op.pass_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, f"{PASSPHRASE} {i}\n".encode())
        os.close(fd)
        for path in (op.root, op.opens, op.pass_file):
            op.give(path)
        operators.append(op)
    return base, operators


def publish(src: Path, dest: Path) -> Path:
    """Copy a public file (network file, operator entry) into the shared folder, readable by every operator."""
    shutil.copyfile(src, dest)
    os.chmod(dest, 0o644)
    return dest


def find_foreign_opens(operators: Sequence[Operator]) -> dict[int, list[str]]:
    """Per operator: the paths of OTHER operators' folders that any of its processes opened."""
    out: dict[int, list[str]] = {}
    for op in operators:
        others = [f"{o.root}/" for o in operators if o is not op]
        bad = []
        for log in sorted(op.opens.glob("*.log")):
            bad += [line for line in log.read_text().splitlines()
                    if not line.startswith("#") and any(line.startswith(p) for p in others)]
        out[op.index] = bad
    return out


def get_opened(op: Operator) -> set[str]:
    """Every path the operator's processes opened."""
    return {line for log in op.opens.glob("*.log") for line in log.read_text().splitlines() if not line.startswith("#")}


def assert_barrier(reader: Operator, target: Path) -> None:
    """Show the kernel refuses `reader`'s processes `target` (only meaningful with separate uids)."""
    code = f"import pathlib, sys\ntry:\n    pathlib.Path({str(target)!r}).read_bytes()\nexcept PermissionError:\n" \
           "    sys.exit(13)\nsys.exit(0)"
    env = {k: v for k, v in reader.env().items() if k != "CLEARING_TEST_OPEN_LOG_DIR"}  # a probe, not the operator
    out = subprocess.run(reader.wrap([PYTHON, "-c", code]), env=env, capture_output=True, timeout=60)
    assert out.returncode == 13, f"operator {reader.index} could read {target}"


def each(operators: Sequence[Operator], fn: Callable[[Operator], Any]) -> list[Any]:
    """`fn` for every operator at once (threads), results in order."""
    with ThreadPoolExecutor(len(operators)) as pool:
        return list(pool.map(fn, operators))


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def genesis_ceremony(ops: Sequence[Operator], p2p_ports: Sequence[int], threshold: int, network_id: int = 7,
                     epoch_s: int = 3, chains: Sequence[int] = (31337, 31338)) -> None:
    """Keys, entries, the coordinator's network file (operator 1 coordinates), each home configured from it."""
    public = ops[0].root.parent / "public"
    each(ops, lambda op: op.run_json("init", "--home", str(op.home), "--passphrase-file", str(op.pass_file),
                                     "--scrypt-n", "1024", "--json"))
    entries = each(ops, lambda op: op.run_json("network", "operator", "--home", str(op.home), "--multiaddr",
                                               f"/ip4/127.0.0.1/tcp/{p2p_ports[op.index - 1]}"))
    for op, entry in zip(ops, entries, strict=True):
        (public / f"op{op.index}.json").write_text(json.dumps(entry))
    coordinator = ops[0]
    coordinator.run_json(
        "network", "new", "--out", str(coordinator.root / "network.json"), "--network-id", str(network_id),
        "--genesis-time", str(int(time.time())), "--epoch-period", str(epoch_s), "--threshold", str(threshold),
        *[a for c in chains for a in ("--chain", f"{c}:1")],
        *[a for op in ops for a in ("--operator", str(public / f"op{op.index}.json"))], "--json")
    publish(coordinator.root / "network.json", public / "network.json")
    each(ops, lambda op: op.run_json("init", "--home", str(op.home), "--network-file", str(public / "network.json"),
                                     "--json"))


def run_dkg(ops: Sequence[Operator], *extra: str) -> list[subprocess.CompletedProcess]:
    return each(ops, lambda op: op.run("dkg", "--home", str(op.home), "--json", "--phase-timeout", "4", *extra,
                                       timeout=240))
