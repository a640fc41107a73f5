"""Regenerates the Python stubs for the ``ridgeline.v1`` contracts, or checks them.

The generated ``*_pb2*.py`` files are committed so that an install needs no code
generation step; this module is the one documented way to refresh them
(``python -m ridgeline.codegen``) and the test suite calls :func:`stale_stubs` so a
stale stub cannot land.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

_PROTO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGE_DIR = Path("ridgeline") / "v1"
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _proto_files() -> list[Path]:
    return sorted((_PROTO_ROOT / _PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path = _PROTO_ROOT) -> list[Path]:
    """Runs protoc (from grpcio-tools) over every contract; returns the files written."""
    well_known = resources.files("grpc_tools") / "_proto"
    written: list[Path] = []
    for proto in _proto_files():
        relative = proto.relative_to(_PROTO_ROOT)
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{_PROTO_ROOT}",
                f"-I{well_known}",
                f"--python_out={out_root}",
                f"--pyi_out={out_root}",
                f"--grpc_python_out={out_root}",
                str(relative),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {relative} with status {status}")
        stem = relative.with_suffix("")
        written += [out_root / f"{stem}{suffix}" for suffix in _GENERATED_SUFFIXES]
    return written


def stale_stubs() -> list[str]:
    """Names the committed stubs that differ from a fresh generation (empty: up to date)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = generate(Path(scratch))
        stale = []
        for path in fresh:
            committed = _PROTO_ROOT / path.relative_to(scratch)
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(committed.relative_to(_PROTO_ROOT)))
        return stale


def main() -> int:
    """``python -m ridgeline.codegen [--check]``."""
    if "--check" in sys.argv[1:]:
        stale = stale_stubs()
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate():
        print(f"wrote {path.relative_to(_PROTO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
