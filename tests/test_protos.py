"""Protos: the committed generated code is current, and buf lint finds nothing."""

from __future__ import annotations

import difflib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "hub" / "proto"


def _load_gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generated_files(base: Path) -> dict[str, Path]:
    """Files under ``base/courthub`` (what generate() owns), by path relative to ``base``."""
    return {
        str(p.relative_to(base)): p
        for p in sorted((base / "courthub").rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    _load_gen_protos().generate(tmp_path)
    fresh, committed = _generated_files(tmp_path), _generated_files(COMMITTED)
    regen = "run `.venv/bin/python scripts/gen_protos.py` and commit hub/proto/"
    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    assert not missing, f"hub/proto/ lacks generated file(s) {missing}: {regen}"
    assert not extra, f"hub/proto/ has file(s) no proto generates {extra}: remove them or {regen}"
    for name, path in fresh.items():
        want, have = path.read_text(), committed[name].read_text()
        if want != have:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        have.splitlines(keepends=True),
                        want.splitlines(keepends=True),
                        f"hub/proto/{name} (committed)",
                        f"hub/proto/{name} (regenerated)",
                    )
                )[:40]
            )
            pytest.fail(f"hub/proto/{name} is stale: {regen}\n{diff}", pytrace=False)


def test_buf_lint_is_clean() -> None:
    buf = Path(sys.executable).parent / "buf"
    assert buf.is_file(), f"buf not found at {buf}: install the dev extra (buf-bin)"
    done = subprocess.run(
        [str(buf), "lint", "protos"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    findings = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not findings, f"buf lint protos (exit {done.returncode}):\n{findings}"
