"""pranc-codec: image compression with PRANC-reparametrized implicit neural networks.

Public API::

    from pranc_codec import encode, decode, CodecConfig
    result = encode(image_uint8_hwc, CodecConfig())
    image = decode(result.data)
"""
from .codec import EncodeResult, EncodeStats, decode, encode, read_header
from .config import BasisConfig, BasisKind, CodecConfig, FitConfig, NetworkConfig, RateConfig
from .errors import FormatError, InputError, LimitError, PrancError

__version__ = "0.1.0"

__all__ = [
    "BasisConfig", "BasisKind", "CodecConfig", "EncodeResult", "EncodeStats", "FitConfig",
    "FormatError", "InputError", "LimitError", "NetworkConfig", "PrancError", "RateConfig",
    "decode", "encode", "read_header",
]
