"""Regenerate the committed Python code for protos/courthub/v1.

Generated modules live in ``hub/proto/courthub/v1``. protoc writes absolute imports
(``from courthub.v1 import x_pb2``) that only work with ``courthub`` as a top-level package; we
rewrite them to relative imports so the generated code stays inside ``hub``.

Usage: ``python scripts/gen_protos.py [OUT_DIR]`` (default: the committed location). The test
``tests/test_protos.py`` regenerates into a temporary directory and fails on any difference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "hub" / "proto"
_IMPORT = re.compile(r"^from courthub\.v1 import (\w+)", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "courthub" / "v1").glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent  # protoc-gen-mypy lives beside this interpreter
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for pkg in (out / "courthub", out / "courthub" / "v1"):
        init = pkg / "__init__.py"
        init.write_text('"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n')
        written.append(init)
    for path in sorted((out / "courthub" / "v1").iterdir()):
        if path.suffix in {".py", ".pyi"} and path.name != "__init__.py":
            text = path.read_text()
            path.write_text(_IMPORT.sub(r"from . import \1", text))
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for p in generate(target):
        print(p.relative_to(target))
