"""Operators as separate OS identities for the network tests.

Each operator gets its own folder (home, passphrase file, open log) and, when the tests run as root,
its own uid (`BASE_UID + index`): every `clearingd` command of operator i runs through `setpriv` as
that uid, and its folder is mode 0700 owned by it, so the kernel refuses any other operator's process
access to its home, share keystore included (`assert_barrier` shows it). Independently of the uids,
every process runs with `tests/network/audit` on PYTHONPATH: its `sitecustomize` logs each file the
process opens (Python's `open` audit event: `open`, `os.open`, `Path.read_bytes`, ...) to the
operator's `opens/` folder, and `find_foreign_opens` lists any path of another operator's folder
that a process opened. Without root the uid barrier is absent (one uid) and only the open logs speak.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AUDIT_DIR = Path(__file__).resolve().parent / "audit"
BASE_UID = 61000
PASSPHRASE = "operator passphrase"
SEPARATE_UIDS = os.geteuid() == 0 and shutil.which("setpriv") is not None


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
        env |= {"HOME": str(self.root), "PYTHONPATH": f"{AUDIT_DIR}{os.pathsep}{REPO}",
                "CLEARING_TEST_OPEN_LOG_DIR": str(self.opens), "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
        return env | (extra or {})

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run as this operator's uid (when the tests run as root)."""
        if self.uid is None:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--", *argv]

    def clearingd(self, *args: str) -> list[str]:
        return self.wrap([sys.executable, "-m", "node.cli.main", *args])

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
    out = subprocess.run(reader.wrap([sys.executable, "-c", code]), env=env, capture_output=True, timeout=60)
    assert out.returncode == 13, f"operator {reader.index} could read {target}"
