"""Fingerprints that tie cached results to the code and data that produced them."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (16 hex) of the codec's own sources (not the evaluation package)."""
    h = hashlib.sha256()
    for p in sorted(_PKG.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
