"""Generate Python code for every `.proto` under `proto/` into `node/pb/`.

The wire standard lives in `proto/clearing/<area>/v1/*.proto` (packages `clearing.<area>.v1`).
protoc emits imports rooted at `clearing.`; they are rewritten to `node.pb.clearing.` so the
generated code lives inside the `node` package (no top-level `proto` or `clearing` package is
installed). `--check` regenerates into a temporary folder and fails if `node/pb` differs.
"""

from __future__ import annotations

import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "node" / "pb"
IMPORT_RE = re.compile(r"^from clearing\.", re.MULTILINE)
IMPORT2_RE = re.compile(r"^import clearing\.", re.MULTILINE)


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    if not files:
        raise SystemExit("no .proto files under proto/")
    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in out.rglob("*.py*"):
        text = path.read_text()
        text = IMPORT_RE.sub("from node.pb.clearing.", text)
        text = IMPORT2_RE.sub("import node.pb.clearing.", text)
        path.write_text(text)
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text("")
    (out / "__init__.py").write_text('"""Generated from proto/ by scripts/gen_proto.py; do not edit."""\n')


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    diffs = [*cmp.left_only, *cmp.right_only]
    diffs += [f for f in cmp.common_files if not filecmp.cmp(a / f, b / f, shallow=False)]
    for sub in cmp.common_dirs:
        diffs += [f"{sub}/{d}" for d in differences(a / sub, b / sub)]
    return diffs


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            diffs = differences(Path(tmp), OUT)
        if diffs:
            print("node/pb is stale; run `make proto`:", ", ".join(sorted(diffs)))
            return 1
        print("node/pb is up to date")
        return 0
    # Generate aside, then swap in, so a concurrent import never sees a half-written tree.
    with tempfile.TemporaryDirectory(dir=OUT.parent) as tmp:
        generate(Path(tmp) / "pb")
        old = Path(tmp) / "old"
        if OUT.exists():
            OUT.rename(old)
        (Path(tmp) / "pb").rename(OUT)
    print(f"generated {sum(1 for _ in OUT.rglob('*_pb2.py'))} modules into node/pb")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
