"""The codecs the harness compares, behind one small interface.

A codec maps (image, rate point) -> (compressed size, decoded image, times).
``heavy`` codecs (the neural ones) are run one task per fresh worker process so
that their peak memory can be measured; Pillow codecs run in the harness process.
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..config import BasisKind, CodecConfig, apply_overrides


@dataclass
class Trial:
    """What one codec produced for one image at one rate point."""

    nbytes: int
    decoded: np.ndarray  # uint8 (H, W, C)
    encode_s: float
    decode_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class Codec:
    """Interface: a named codec with a default sweep of rate points."""

    name: str
    description: str
    points: list[float]  # default sweep (quality for Pillow, target bpp for neural)
    heavy: bool = False

    def identity(self) -> dict[str, Any]:
        """Everything that changes the result; part of the cache key."""
        raise NotImplementedError

    def run(self, image: np.ndarray, point: float, threads: int = 0) -> Trial:
        raise NotImplementedError

    def runs_on_cpu(self) -> bool:
        """Whether its encodes run on the CPU (in the process that asks), whose speed the harness measures."""
        return True


class PillowCodec(Codec):
    """JPEG / WebP / AVIF through Pillow, swept over its quality setting."""

    def __init__(self, name: str, fmt: str, description: str, points: list[float], **options: Any):
        self.name, self.fmt, self.description, self.points = name, fmt, description, points
        self.options = options

    def identity(self) -> dict[str, Any]:
        import PIL
        from PIL import features

        lib = {"JPEG": "libjpeg_turbo", "WEBP": "webp", "AVIF": "avif"}[self.fmt]
        return {"pillow": PIL.__version__, "lib": features.version(lib), "fmt": self.fmt, "options": self.options}

    def run(self, image: np.ndarray, point: float, threads: int = 0) -> Trial:
        """``image``: uint8 (H, W, C), C in {1, 3}, or {2, 4} with the alpha last: WebP and AVIF keep it (grey as
        RGB, which they code), JPEG, which cannot, codes the colour alone and decodes opaque."""
        from PIL import Image

        channels = image.shape[2]
        grey, alpha = channels in (1, 2), channels in (2, 4)
        if alpha and self.fmt == "JPEG":
            colour = self.run(np.ascontiguousarray(image[:, :, :-1]), point, threads)
            opaque = np.full(image.shape[:2] + (1,), 255, np.uint8)
            return replace(colour, decoded=np.concatenate([colour.decoded, opaque], axis=2))
        pil = Image.fromarray(image[..., 0] if channels == 1 else image, "LA" if channels == 2 else None)
        if channels == 2:
            pil = pil.convert("RGBA")  # neither WebP nor AVIF has grey with alpha
        buf = io.BytesIO()
        t0 = time.perf_counter()
        pil.save(buf, self.fmt, quality=int(point), **self.options)
        t1 = time.perf_counter()
        data = buf.getvalue()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            out = np.asarray(im.convert({(True, False): "L", (False, False): "RGB", (True, True): "LA",
                                         (False, True): "RGBA"}[grey, alpha]))
        t2 = time.perf_counter()
        return Trial(len(data), out.reshape(image.shape), t1 - t0, t2 - t1)


class PrancCodec(Codec):
    """pranc itself (or its direct-weight control), swept over target bpp."""

    heavy = True

    def __init__(self, name: str, description: str, points: list[float], config: CodecConfig):
        self.name, self.description, self.points, self.config = name, description, points, config

    def identity(self) -> dict[str, Any]:
        from .. import __version__
        from .provenance import source_digest

        return {"version": __version__, "source": source_digest(), "config": _jsonable(asdict(self.config))}

    def runs_on_cpu(self) -> bool:
        from ..codec import resolve_device

        return resolve_device(self.config.device).type == "cpu"

    def run(self, image: np.ndarray, point: float, threads: int = 0) -> Trial:
        from dataclasses import replace

        from ..codec import decode, encode

        cfg = replace(self.config, rate=replace(self.config.rate, bpp=float(point)),
                      fit=replace(self.config.fit, threads=threads))
        t0 = time.perf_counter()
        res = encode(image, cfg)
        t1 = time.perf_counter()
        out = decode(res.data)
        t2 = time.perf_counter()
        s = res.stats
        extra = {"num_coefs": s.num_coefs, "net_width": s.net_width, "rate_ok": s.rate_ok,
                 "encoder_psnr": s.psnr, "lossless": s.lossless, "model": s.model, "device": s.device}
        return Trial(len(res.data), out, t1 - t0, t2 - t1, extra)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, BasisKind):
        return obj.name
    return obj


# 1..4 extend JPEG's curve below its q=5 rate (~0.22 bpp on Kodak); 5..95 match CompressAI's sweep
QUALITIES = [1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95]
BPP_POINTS = [0.125, 0.25, 0.5, 1.0]


def registry(bpp: list[float] | None = None, qualities: list[float] | None = None,
             overrides: list[str] | None = None, preset: str = "default", tune: str = "balanced") -> dict[str, Codec]:
    """Every codec the harness knows, by name. ``overrides`` apply to the neural ones."""
    from PIL import features

    bpp = bpp or BPP_POINTS
    qualities = [int(q) for q in (qualities or QUALITIES)]
    base = apply_overrides(CodecConfig().with_preset(preset).with_tune(tune), overrides or [])
    # the tune is the grid model's: the siren codecs are built without it, so they keep their cached results
    siren = apply_overrides(CodecConfig().with_preset(preset), (overrides or []) + ["model=siren"])

    def direct(bits: float) -> CodecConfig:
        return apply_overrides(siren, ["basis.kind=IDENTITY", f"rate.bits_per_coef={bits}"])

    codecs: list[Codec] = [
        PrancCodec("pranc", f"pranc ({preset} preset, {tune} tune, {base.model} model)", bpp, base),
        PrancCodec("siren", f"pranc --model siren: the PRANC random-basis SIREN ({preset} preset)", bpp, siren),
        PrancCodec("direct", "direct-weight INR: the siren model's network, fit, quantizer and coder, weights coded "
                   f"directly at its {base.rate.bits_per_coef:g} bits/coefficient budget", bpp,
                   apply_overrides(siren, ["basis.kind=IDENTITY"])),
        PrancCodec("direct-16", "direct-weight INR: same network, fit and coder; ~16 bits/weight", bpp, direct(16)),
        PrancCodec("direct-8", "direct-weight INR: same network, fit and coder; ~8 bits/weight", bpp, direct(8)),
        PillowCodec("jpeg", "JPEG", "JPEG (Pillow, default 4:2:0)", qualities),
        PillowCodec("jpeg-444", "JPEG", "JPEG (Pillow, 4:4:4)", qualities, subsampling=0),
        PillowCodec("webp", "WEBP", "WebP (Pillow)", qualities),
    ]
    if features.check("avif"):
        codecs.append(PillowCodec("avif", "AVIF", "AVIF (Pillow)", qualities))
    return {c.name: c for c in codecs}
