"""``decode(data) -> image``, the public decoder: latent-grid files (versions 4-8) in numpy, without
loading torch (``grid_decode.py``: a decode starts in a fraction of a second, not 1.5-2 s); lossless files
(version 9) through libwebp (``lossless.py``); composite files (version 10) through both (``composite.py``);
PRANC SIREN files (version 3) through torch (``codec.decode_siren``); files with transparency (version 11) as
their colour file, its alpha stacked on (``alpha.py``); files with metadata (version 12) as their picture's
file (the metadata is the header's: ``bitstream.MetadataHeader``)."""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from . import alpha, bitstream, composite, grid_decode, lossless
from .bitstream import AlphaHeader, CompositeHeader, GridHeader, Header, LosslessHeader, MetadataHeader
from .metadata import Metadata


def decode(data: bytes, device: str = "cpu", threads: int = 1) -> np.ndarray:
    """``.prc`` bytes -> uint8 image (H, W, C), C in {1, 3}, or {2, 4} with alpha last (a version-11 file), in
    the colour space of the file's ICC profile where it has one (``bitstream.parse(data)[0].metadata.icc``).
    Raises FormatError/LimitError on bad input.

    The same pixels on every machine and device (FORMAT.md fixes every operation that makes them).
    ``device`` ("cpu", "cuda", "auto") is where a SIREN file's network runs; a grid or lossless file decodes on the CPU,
    rendering and filtering ``threads`` strips of rows side by side.
    """
    return decode_parsed(*bitstream.parse(data), device=device, threads=threads)


def read_metadata(data: bytes) -> Metadata:
    """The ICC profile, EXIF and XMP a ``.prc`` file holds (version 12), or an empty Metadata (falsy) for a file
    of another version. Raises FormatError/LimitError on bad input, as :func:`decode`."""
    header, _ = bitstream.parse(data)
    return header.metadata if isinstance(header, MetadataHeader) else Metadata()


def decode_parsed(header: Header | GridHeader | LosslessHeader | CompositeHeader | AlphaHeader | MetadataHeader,
                  payload: bytes, device: str = "cpu", threads: int = 1) -> np.ndarray:
    """:func:`decode` of a file :func:`bitstream.parse` has already read and checked."""
    if isinstance(header, MetadataHeader):
        header, payload = header.picture, header.picture_payload
    if isinstance(header, Header):
        from .codec import decode_siren  # torch, whose threads are its own

        return decode_siren(header, payload, device)
    # numpy's BLAS (the grid's float32 products) on one thread, the caller's count back afterwards: on every core
    # it made three `pranc decode`s side by side 200 x slower (RESULTS.md "CUDA: session 14"), and even alone a
    # second BLAS thread costs time (Kodak files, 0.33 against 0.29 s a decode, ABLATIONS.md BQ1). The cores go to
    # ``threads`` strips of rows instead, each on one BLAS thread; the pixels are the same either way.
    with threadpool_limits(limits=1, user_api="blas"):
        if isinstance(header, GridHeader):
            return grid_decode.decode(header, payload, threads)
        if isinstance(header, LosslessHeader):
            return lossless.decode(header, payload)
        if isinstance(header, CompositeHeader):
            return composite.decode(header, threads)
        return alpha.decode(header, device, threads)  # an AlphaHeader: bitstream.parse returns no other kind
