"""Compile `bridges/contracts/*.sol` and `bridges/contracts/interfaces/*.sol` offline with the pinned solcjs into `bridges/artifacts/`.

One JSON per contract (`<Name>.json`: contractName, sourceName, abi, bytecode, deployedBytecode,
sourceHash = sha256 over every source file, solcVersion). Settings are fixed (evmVersion prague,
optimizer on, 200 runs) so the output is reproducible. `--check` recompiles into memory and exits 1
if any committed artifact differs or is missing or stale; it writes nothing.

Usage: .venv/bin/python scripts/compile_contracts.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "bridges" / "contracts"
ARTIFACTS_DIR = REPO_ROOT / "bridges" / "artifacts"
SOLC_MODULE = REPO_ROOT / "node_modules" / "solc"
COMPILE_TIMEOUT_S = 300
EVM_VERSION = "prague"
OPTIMIZER_RUNS = 200
SOLC_VERSION_PREFIX = "0.8.37+"  # the pinned npm solc; a different one would change every artifact

# Reads standard JSON on stdin, prints `version` then the compiler output.
NODE_DRIVER = """
const solc = require(process.argv[1]);
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const out = solc.compile(input);
  process.stdout.write('\\n@@SOLC@@' + solc.version() + '\\n' + out);
});
"""


def get_sources() -> dict[str, str]:
    """Source name (path under bridges/contracts, e.g. "interfaces/IMarginRegistry.sol") -> text."""
    paths = [*CONTRACTS_DIR.glob("*.sol"), *CONTRACTS_DIR.glob("interfaces/*.sol")]
    return {p.relative_to(CONTRACTS_DIR).as_posix(): p.read_text() for p in sorted(paths)}


def compute_source_hash(sources: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return h.hexdigest()


def get_standard_input(sources: dict[str, str]) -> dict:
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def run_solc(standard_input: dict) -> tuple[str, dict]:
    """Run solcjs through node; strips whatever it prints before the JSON (the SMT notice)."""
    proc = subprocess.run(
        ["node", "-e", NODE_DRIVER, str(SOLC_MODULE)], input=json.dumps(standard_input),
        capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False,
    )
    if proc.returncode != 0 or "@@SOLC@@" not in proc.stdout:
        raise SystemExit(f"solc failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
    tail = proc.stdout.split("@@SOLC@@", 1)[1]
    version, body = tail.split("\n", 1)
    return version.strip(), json.loads(body[body.index("{"):])


def compile_artifacts() -> dict[str, dict]:
    """Name -> artifact for every contract with bytecode or an ABI; raises on compiler errors."""
    sources = get_sources()
    version, output = run_solc(get_standard_input(sources))
    if not version.startswith(SOLC_VERSION_PREFIX):
        raise SystemExit(f"solc version {version} is not the pinned {SOLC_VERSION_PREFIX.rstrip('+')}")
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    for w in output.get("errors", []):
        if w.get("severity") == "warning":
            print(w.get("formattedMessage", w.get("message", "")).strip(), file=sys.stderr)
    source_hash = compute_source_hash(sources)
    artifacts: dict[str, dict] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for name, data in sorted(contracts.items()):
            if name in artifacts:
                raise SystemExit(f"duplicate contract name {name} in {source_name}")
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "solcVersion": version,
                "evmVersion": EVM_VERSION,
                "sourceHash": source_hash,
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict]) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS_DIR.glob("*.json"):
        if stale.stem not in artifacts:
            stale.unlink()
    for name, artifact in artifacts.items():
        (ARTIFACTS_DIR / f"{name}.json").write_text(render(artifact))


def get_differences(artifacts: dict[str, dict]) -> list[str]:
    diffs = []
    existing = {p.stem for p in ARTIFACTS_DIR.glob("*.json")}
    for name in sorted(existing - artifacts.keys()):
        diffs.append(f"{name}.json has no source")
    for name, artifact in sorted(artifacts.items()):
        path = ARTIFACTS_DIR / f"{name}.json"
        if not path.is_file():
            diffs.append(f"{name}.json is missing")
        elif path.read_text() != render(artifact):
            diffs.append(f"{name}.json differs from a fresh compilation")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")
    args = parser.parse_args(argv)
    artifacts = compile_artifacts()
    if args.check:
        diffs = get_differences(artifacts)
        for d in diffs:
            print(d, file=sys.stderr)
        return 1 if diffs else 0
    write_artifacts(artifacts)
    print(f"wrote {len(artifacts)} artifacts to {ARTIFACTS_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
