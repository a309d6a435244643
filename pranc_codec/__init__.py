"""pranc-codec: image compression with PRANC-reparametrized implicit neural networks.

Public API::

    from pranc_codec import encode, decode, CodecConfig
    result = encode(image_uint8_hwc, CodecConfig())
    image = decode(result.data)
    meta = read_metadata(result.data)   # ICC profile, EXIF, XMP (encode(..., metadata=...)), if any
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import BasisConfig, BasisKind, CodecConfig, FitConfig, LosslessConfig, NetworkConfig, RateConfig
from .errors import FormatError, InputError, LimitError, PrancError
from .metadata import Metadata

if TYPE_CHECKING:
    from .codec import EncodeResult, EncodeStats, encode, read_header
    from .decoder import decode, read_metadata
    from .quality_target import encode_to_psnr

__version__ = "0.1.0"

# The codec's names come from their modules on first use (PEP 562), because the encoder imports torch (about
# 1.5 s): `pranc --help` and a batch's parent process, which only schedules, never need it, nor does decoding a
# grid file (decoder.py).
_LAZY = {"EncodeResult": "codec", "EncodeStats": "codec", "decode": "decoder", "encode": "codec",
         "read_header": "codec", "encode_to_psnr": "quality_target", "read_metadata": "decoder"}

__all__ = [
    "BasisConfig", "BasisKind", "CodecConfig", "EncodeResult", "EncodeStats", "FitConfig",
    "FormatError", "InputError", "LimitError", "LosslessConfig", "Metadata", "NetworkConfig", "PrancError",
    "RateConfig", "decode", "encode", "encode_to_psnr", "read_header", "read_metadata",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("." + _LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
