"""What keeping a wide-gamut picture's ICC profile buys (format version 12, ``pranc encode --metadata``).

Each Kodak picture named is taken as a Display P3 picture (its pixel values tagged with a P3 profile: the
primaries of Display P3, gamma 2.2, the tests' profile), so its saturated colours lie outside sRGB. It is coded at
each rate twice, at equal file size (the profile's bytes come out of the rate):

- ``kept`` (the default, ``--metadata all``): the P3 values coded, the profile in the file;
- ``srgb`` (``--metadata none``): converted to sRGB on the way in (lcms, relative colorimetric: out-of-gamut
  colours clipped), coded, and shown by a viewer as sRGB.

Both decoded pictures are brought back to P3 values (the second through lcms from sRGB) and compared with the
original P3 values: PSNR, and the mean CIE76 colour difference (Delta E*ab, from lcms' 8-bit Lab).
``convert`` is the sRGB round trip alone, before any coding: the most the ``srgb`` file could reach.

    python eval/wide_gamut.py [--dataset ../shared/data/kodak] [--images kodim03,kodim23] [--bpp 0.25,0.5,1]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pranc_codec import CodecConfig, decode, encode  # noqa: E402
from pranc_codec.image_io import read_picture  # noqa: E402
from pranc_codec.metadata import parse_kinds  # noqa: E402
from pranc_codec.metrics import psnr  # noqa: E402
from tests.test_metadata import P3  # noqa: E402


def _convert(arr: np.ndarray, src: ImageCms.ImageCmsProfile, dst, mode: str = "RGB") -> np.ndarray:
    out = ImageCms.profileToProfile(Image.fromarray(arr), src, dst, outputMode=mode,
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return np.asarray(out)


def delta_e(a: np.ndarray, b: np.ndarray, p3: ImageCms.ImageCmsProfile) -> float:
    """Mean CIE76 Delta E*ab between two P3 pictures (uint8 (H, W, 3)), through lcms' 8-bit Lab."""
    lab = ImageCms.createProfile("LAB")
    la, lb = (_lab(_convert(x, p3, lab, "LAB")) for x in (a, b))
    return float(np.sqrt(((la - lb) ** 2).sum(axis=2)).mean())


def _lab(raw: np.ndarray) -> np.ndarray:
    """Pillow's 8-bit Lab (L* 0..255 for 0..100; a* and b* signed bytes) -> float64 L*, a*, b*."""
    out = raw.astype(np.float64)
    out[..., 0] *= 100 / 255
    out[..., 1:] = raw[..., 1:].view(np.int8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    ap.add_argument("--images", default="kodim03,kodim23")
    ap.add_argument("--bpp", default="0.25,0.5,1")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(P3))
    srgb = ImageCms.createProfile("sRGB")
    for name in args.images.split(","):
        src = Path(args.dataset) / f"{name}.png"
        buf = io.BytesIO()
        with Image.open(src) as im:
            im.convert("RGB").save(buf, "PNG", icc_profile=P3)
        tagged = Path("/tmp") / f"wide_gamut_{name}.png"
        tagged.write_bytes(buf.getvalue())
        original, _, meta = read_picture(tagged, keep=parse_kinds("all"))
        clipped, _, _ = read_picture(tagged, keep=parse_kinds("none"))
        back = _convert(clipped, srgb, p3)
        print(json.dumps({"image": name, "kind": "convert", "psnr_p3": round(psnr(original, back), 2),
                          "delta_e": round(delta_e(original, back, p3), 3)}), flush=True)
        for bpp in (float(b) for b in args.bpp.split(",")):
            c = CodecConfig()
            c = replace(c, rate=replace(c.rate, bpp=bpp), fit=replace(c.fit, threads=args.threads))
            for kind, pixels, m in (("kept", original, meta), ("srgb", clipped, None)):
                t = time.perf_counter()
                r = encode(pixels, c, metadata=m)
                out = decode(r.data)
                if kind == "srgb":
                    out = _convert(out, srgb, p3)
                print(json.dumps({"image": name, "kind": kind, "target": bpp, "bpp": round(r.stats.bpp, 4),
                                  "metadata_bytes": r.stats.metadata_bytes, "psnr_p3": round(psnr(original, out), 2),
                                  "delta_e": round(delta_e(original, out, p3), 3),
                                  "seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
