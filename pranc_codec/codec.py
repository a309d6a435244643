"""Public API: ``encode(image, config) -> EncodeResult`` and ``decode(data) -> image``.

Images are uint8 numpy arrays (H, W, C) with C in {1, 3}, or {2, 4} with an alpha channel last; a picture's
ICC profile, EXIF and XMP go with it as a ``metadata.Metadata`` (format version 12).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from . import alpha as transparency
from . import bitstream, composite, entropy, grid_codec, lossless, split, time_budget
from .batch import available_cores, compute_threads
from .bitstream import GridHeader, Header, LosslessHeader
from .config import LOSSLESS_MODES, BasisKind, CodecConfig, RateConfig
from .errors import InputError, LimitError, require_positive
from .fit import fit_alpha, group_sensitivity
from .metadata import Metadata, label
from .fit import TileData
from .inr import SirenShape, render, width_for_params
from .tiling import TileGrid
from .metrics import judged, psnr_of_mse, reportable
from .quantization import coef_steps, dequantize, quantize, shifts_for
from .basis import EXPANSION_ONE, SubspaceSpec
from .decoder import decode  # noqa: F401 (the public API's decode, re-exported)
from .subspace import Subspace, reconstruct

# (phase name, total units[, unit name, "step" by default]) announcement, then per-unit progress.
ProgressFactory = Callable[..., Callable[[int, float], None]]


@dataclass
class EncodeStats:
    """What the encoder measured; PSNR/MS-SSIM are of the decoder's exact output."""

    width: int
    height: int
    channels: int
    bytes: int
    bpp: float
    target_bpp: float
    rate_ok: bool  # within the rate tolerance of the target, or lossless at most that far over it
    psnr: float  # inf for a lossless file (to_dict: None, as JSON has no infinity)
    ms_ssim: float | None
    num_coefs: int  # coded values: alpha (siren), or latents + MLP weights (grid)
    num_params: int
    net_width: int
    delta: float
    encode_seconds: float
    device: str
    fit_restarts: int = 0  # divergence-guard restarts (fit.py), or grid fits redone by the collapse guard
    # "grid" (format v8), "siren" (format v3), "lossless" or "palette" (format v9: no network), "composite" (v10)
    model: str = "siren"
    target_psnr: float | None = None  # the PSNR asked for (quality_target.encode_to_psnr), else None
    passes: int = 1  # whole encodes made (several when searching for a PSNR target)
    search: list[tuple[float, float, float]] = field(default_factory=list)  # each pass's (asked bpp, bpp, PSNR)
    max_bytes: int | None = None  # the ceiling asked for (--max-size), else None
    trim_sweeps: int = 0  # rounding sweeps that brought the file under max_bytes (grid_codec.trim_to_ceiling)
    # bytes of the alpha's file of a picture with transparency (format v11; then channels counts the alpha, PSNR is
    # the colour's over the pixels not fully transparent, MS-SSIM the colour's with the others as the picture's),
    # 0 for an opaque one
    alpha_bytes: int = 0
    alpha_psnr: float | None = None  # the alpha's PSNR (format v11; inf: exact, to_dict: None), else None
    strips: int = 0  # the strips a large picture was fitted as (split.py; a composite file), 0 where it was not
    metadata_bytes: int = 0  # bytes of the metadata block (ICC profile, EXIF, XMP; format v12), 0 without
    # the grid network's fitting steps and rounding sweeps (a time budget's cut, or the configured counts), 0 where
    # the file is not one network's (lossless, palette, composite, siren)
    steps: int = 0
    sweeps: int = 0
    time_limit: float | None = None  # the seconds asked for (--time), else None
    warnings: list[str] = field(default_factory=list)

    @property
    def lossless(self) -> bool:
        """The file holds the exact pixels (format v9, or v11 with its alpha exact)."""
        return self.model == "lossless" and self.alpha_psnr in (None, math.inf)

    def to_dict(self) -> dict:
        """The fields and ``lossless``, for JSON: an infinite PSNR (a lossless file, or a --psnr search's lossless
        pass) as None."""
        return {**asdict(self), "lossless": self.lossless, "psnr": reportable(self.psnr),
                "alpha_psnr": None if self.alpha_psnr is None else reportable(self.alpha_psnr),
                "search": [(asked, bpp, reportable(p)) for asked, bpp, p in self.search]}


@dataclass
class EncodeResult:
    data: bytes
    stats: EncodeStats


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but CUDA is not available")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device(name)


def aim_bpp(rate: RateConfig, height: int, width: int) -> float:
    """The rate (bits per pixel) an encode of a height x width picture aims at: ``rate.bpp``, or under a ceiling
    (``rate.max_bytes``) at most ``rate.cap_margin`` under it, so that few files need trimming."""
    if rate.max_bytes is None:
        return rate.bpp
    return min(rate.bpp, 8.0 * rate.max_bytes * (1 - rate.cap_margin) / (height * width))


def tile_grid(config: CodecConfig, height: int, width: int) -> TileGrid:
    """The tiling of the image (one tile when ``tile_side`` is 0 or covers the image)."""
    side = config.network.tile_side or max(height, width)
    return TileGrid(height, width, min(max(height, width), max(1, side)))


def plan(config: CodecConfig, height: int, width: int, channels: int) -> SubspaceSpec:
    """Choose the network and basis layout whose coefficient count fits the bit budget."""
    net, basis, rate = config.network, config.basis, config.rate
    if basis.kind == BasisKind.ORTHOGONAL and (basis.chunk_size < 1 or basis.chunk_size & (basis.chunk_size - 1)):
        raise InputError(f"the orthogonal basis needs a power-of-two chunk size, not {basis.chunk_size}")
    tiles = tile_grid(config, height, width).count
    expansion_fp = EXPANSION_ONE if basis.kind == BasisKind.IDENTITY else \
        int(min(65535, max(1, round(basis.expansion * EXPANSION_ONE))))
    n_groups = net.hidden_layers + 1
    budget_bits = rate.bpp * height * width - 8 * bitstream.header_size(n_groups)
    k_target = max(rate.min_coefs, budget_bits / rate.bits_per_coef / tiles)  # per tile
    n_target = int(k_target * expansion_fp / EXPANSION_ONE)
    w = config.width or width_for_params(n_target, net.hidden_layers, channels, net.min_width, net.max_width)
    omega0 = net.omega0_wide if 0 < net.wide_from <= w else net.omega0
    # omega0 goes through float32 exactly as the header stores it
    shape = SirenShape(width=w, hidden_layers=net.hidden_layers, channels=channels,
                       omega0=float(np.float32(omega0)))
    spec = SubspaceSpec(seed=config.seed & 0xFFFFFFFF, kind=basis.kind, chunk_size=basis.chunk_size,
                        expansion_fp=expansion_fp,
                        density_byte=int(min(256, max(1, round(basis.ternary_density * 256)))),
                        offset=basis.offset, shape=shape, tiles=tiles)
    bitstream.check_limits(spec, height * width)
    return spec


def _pack(spec: SubspaceSpec, q: np.ndarray, delta: float, shifts: list[int], grid: TileGrid) -> bytes:
    """Quantized symbols -> complete ``.prc`` bytes (fits the entropy models to q)."""
    sizes = spec.group_sizes()
    bounds = np.cumsum([0] + sizes)
    models = [entropy.fit_model(q[bounds[i]: bounds[i + 1]]) for i in range(len(sizes))]
    payload = entropy.encode(q, sizes, models)
    header = Header(width=grid.width, height=grid.height, channels=spec.shape.channels, spec=spec, tile_side=grid.side,
                    delta=float(np.float32(delta)), models=tuple(models), shifts=tuple(shifts))
    return bitstream.pack(header, payload)


def _search_delta(spec: SubspaceSpec, alpha: np.ndarray, shifts: list[int], target_bytes: float,
                  grid: TileGrid) -> tuple[float, bytes]:
    """Bisect the quantization step (log scale) so the file size meets the target."""
    lo, hi = math.log(1e-5), math.log(1e2)  # alpha is on a unit scale
    sizes = spec.group_sizes()
    best: tuple[float, bytes] | None = None
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        delta = float(np.float32(math.exp(mid)))
        data = _pack(spec, quantize(alpha, coef_steps(delta, shifts, sizes)), delta, shifts, grid)
        if best is None or abs(len(data) - target_bytes) < abs(len(best[1]) - target_bytes):
            best = (delta, data)
        if len(data) > target_bytes:
            lo = mid  # too big: coarser step
        else:
            hi = mid
        if abs(len(data) - target_bytes) <= 0.01 * target_bytes:
            break
    assert best is not None
    return best


def encode(image: np.ndarray, config: CodecConfig = CodecConfig(),
           progress: ProgressFactory | None = None, metadata: Metadata | None = None) -> EncodeResult:
    """Fit, quantize and entropy-code ``image`` (uint8 (H, W, C)) into ``.prc`` bytes; C in {1, 3}, or {2, 4}
    with an alpha channel last (:func:`_encode_alpha`). With ``metadata`` (any field present), a version-12
    file of it and of the picture's file, coded at the rate the metadata leaves (:func:`metadata_room`)."""
    t0 = time.perf_counter()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise InputError("image must be uint8 (H, W, C) with 1 to 4 channels (2 and 4: alpha last)")
    height, width, channels = image.shape
    if max(height, width) > bitstream.MAX_SIDE or height * width > bitstream.MAX_PIXELS:
        raise LimitError(f"image of {width}x{height} exceeds the limits "
                         f"({bitstream.MAX_SIDE} per side, {bitstream.MAX_PIXELS} pixels)")
    require_positive(config.rate.bpp, "--bpp")
    if config.rate.max_bytes is not None:
        if config.model != "grid":
            raise InputError("--max-size only applies to --model grid")
        if config.rate.max_bytes < 1:
            raise InputError(f"--max-size must be at least one byte, not {config.rate.max_bytes}")
    device = resolve_device(config.device)
    if config.model not in ("grid", "siren"):
        raise InputError(f"unknown model {config.model!r} (grid or siren)")
    if config.time.limit is not None:
        if config.model != "grid":
            raise InputError("--time only applies to --model grid")
        if not 0 < config.time.limit < math.inf or not 0 <= config.time.spent < math.inf:
            raise InputError(f"--time must be a positive number of seconds, not {config.time.limit:g}")
    if metadata:
        block = bitstream.metadata_block(metadata)
        inner = encode(image, time_share(metadata_room(config, block, height, width), t0), progress)
        result = with_metadata(inner, metadata, block, config, t0)
    else:
        with compute_threads(fit_threads(config)):  # the caller's count back afterwards: the API leaves no trace
            encode_picture = _encode_alpha if channels in (2, 4) else _encode_colour
            result = encode_picture(image, config, device, progress, t0)
    return time_checked(result, config)


def time_share(config: CodecConfig, t0: float, parts: int = 1) -> CodecConfig:
    """``config`` for the next of ``parts`` encodes made one after the other in what is left of its time budget,
    which began ``config.time.spent`` seconds before ``t0`` (time.perf_counter): an equal share
    (time_budget.share); itself where it has none."""
    t = config.time
    if t.limit is None:
        return config
    left = time_budget.share(t.limit - t.spent, t0, parts)
    return replace(config, time=replace(t, limit=left, spent=0.0))


def time_checked(result: EncodeResult, config: CodecConfig) -> EncodeResult:
    """``result`` with the time budget asked for (``config.time.limit``) in its stats, and a warning where the
    encode (and what went before it, ``config.time.spent``) took longer; a file under its rate's tolerance is
    said to have missed it within the budget, where the rate check said the picture could not reach it."""
    t = config.time
    if t.limit is None:
        return result
    s = result.stats
    notes = list(s.warnings)
    if not s.rate_ok and s.bpp < s.target_bpp:  # under its rate: the budget cut the fit short, as far as we know
        notes = [n.replace(RATE_MISSED, f"bpp not reached within --time {t.limit:g}") for n in notes]
    took = s.encode_seconds + t.spent
    if took > t.limit:
        fewest = " (the fewest fitting steps and one rounding sweep)" if (
            0 < s.steps <= t.min_steps and s.sweeps <= 1) else ""
        notes.append(f"took {took:.1f} s, over the {t.limit:g} s asked for (--time){fewest}")
    return replace(result, stats=replace(s, time_limit=t.limit, warnings=notes))


def _encode_colour(image: np.ndarray, config: CodecConfig, device: torch.device, progress: ProgressFactory | None,
                   t0: float, seen: np.ndarray | None = None) -> EncodeResult:
    """The path of :func:`encode` for a uint8 (H, W, C) picture, C in {1, 3}: its exact file where it fits, else
    the best of its palette, composite and network files. ``seen``: bool (H, W), the pixels whose colour is seen
    (of a picture with transparency), the only ones the network fits and the files are judged by; None: all."""
    height, width = image.shape[:2]
    # before the ceiling's margin: a lossless, palette or composite file may fill the ceiling
    exact = _lossless(image, config)
    if exact is not None:
        return _finish(image, exact, config, device, t0, seen, model="lossless", **_NO_NETWORK)
    pal = _palette(image, config, device, t0, seen)
    if pal is not None and pal.stats.psnr >= config.lossless.palette_final_db:
        return pal
    parts = _composite(image, config, device, progress, t0, seen)
    if config.rate.max_bytes is not None:
        config = replace(config, rate=replace(config.rate, bpp=aim_bpp(config.rate, height, width)))
    encode_network = _encode_grid if config.model == "grid" else _encode_siren
    result = None
    try:
        if seen is None and split.applies(image, config, device.type == "cpu"):
            result = _encode_split(image, config, device, progress, t0)
        else:
            result = encode_network(image, config, device, progress, t0, seen)
    except LimitError:  # the network's smallest file is over the ceiling: a file made within it still stands
        if parts is None and pal is None:
            raise
    # the network's file is the default: a composite or palette file replaces it where it does no worse (a
    # composite lost to the network on a slide, whose large text the network draws well; ABLATIONS.md AQ3)
    for other in (parts, pal):
        if other is not None:
            result = _better(result, other, config, t0)
    return result


def _encode_alpha(image: np.ndarray, config: CodecConfig, device: torch.device, progress: ProgressFactory | None,
                  t0: float) -> EncodeResult:
    """The path of :func:`encode` for a picture with an alpha channel (uint8 (H, W, C + 1)): where any pixel is
    not opaque, a version-11 file of its alpha, exact where the colour's exact file fits with it (or ``--lossless
    always``), else reduced (``alpha.reduced_alpha``), and of its colour, coded by :func:`_encode_colour` at the
    rate the alpha leaves, fitted and judged on the pixels whose alpha is not 0 alone, the others filled
    (``alpha.fill_hidden``) but with ``--lossless always``; else the colour's file alone."""
    height, width, channels = image.shape
    colour, alpha = transparency.split(image)
    if alpha.min() == 255:  # opaque: the alpha holds nothing
        return _encode_colour(colour, config, device, progress, t0)
    cap, pixels, mode = config.rate.max_bytes, height * width, config.lossless.mode
    size = _budget(image, config)
    filled, exact, exact_colour = exact_with_alpha(colour, alpha, size, config)
    if mode == "always" or exact_colour is not None:
        alpha_file, alpha_db = exact, math.inf  # the colour's exact file fits with it: the whole picture exact
    else:
        alpha_file, alpha_db = transparency.reduced_alpha(alpha, exact, config.alpha, config.lossless)
    left = size - bitstream.alpha_overhead() - len(alpha_file)
    if left < config.alpha.min_colour_bpp * pixels / 8:
        if cap is not None:
            raise LimitError(f"the transparency alone takes {len(alpha_file)} bytes: with the colour, over the "
                             f"ceiling of {cap} bytes")
        left = config.alpha.min_colour_bpp * pixels / 8  # over the rate asked for, which the rate check reports
    rate = replace(config.rate, bpp=8 * left / pixels, max_bytes=None if cap is None else int(left))
    seen = alpha[:, :, 0] > 0
    seen_or_all = seen if seen.any() else None
    inner_config = replace(config, rate=rate)
    if exact_colour is not None:  # what _encode_colour's exact trial would find again (the same budget or more)
        inner = _finish(filled, exact_colour, inner_config, device, t0, seen_or_all, model="lossless", **_NO_NETWORK)
    else:
        inner = _encode_colour(filled, inner_config, device, progress, t0, seen_or_all)
    data = bitstream.pack_alpha(width, height, channels, inner.data, alpha_file)
    rate_ok, notes = _rate_check(config, len(data), height, width, inner.stats.model)
    stats = replace(inner.stats, channels=channels, bytes=len(data), bpp=8.0 * len(data) / pixels,
                    target_bpp=config.rate.bpp, rate_ok=rate_ok, encode_seconds=time.perf_counter() - t0,
                    max_bytes=cap, alpha_bytes=len(alpha_file), alpha_psnr=alpha_db, warnings=notes)
    return EncodeResult(data=data, stats=stats)


def exact_with_alpha(colour: np.ndarray, alpha: np.ndarray, size: float,
                     config: CodecConfig) -> tuple[np.ndarray, bytes, bytes | None]:
    """The exact trial of a picture with transparency (uint8 (H, W, C) colour, (H, W, 1) alpha): the colour with
    its hidden pixels filled (``alpha.fill_hidden``; all kept under ``--lossless always``), the alpha's exact
    file, and the colour's exact file where ``config.lossless.mode`` is "auto" and it fits in ``size`` bytes
    with that alpha and the version-11 overhead (else None)."""
    mode = config.lossless.mode
    exact = lossless.encode(alpha, config.lossless)
    # "always" keeps every pixel exact, the hidden ones' colour too (as cwebp -exact), for a user who uses it
    filled = colour if mode == "always" else transparency.fill_hidden(colour, alpha)
    left = size - bitstream.alpha_overhead() - len(exact)
    return filled, exact, lossless.attempt(filled, left, config.lossless) if mode == "auto" else None


def metadata_room(config: CodecConfig, block: tuple[bytes, bool], height: int, width: int) -> CodecConfig:
    """``config`` with its rate and ceiling less the bytes a version-12 file adds for ``block``
    (``bitstream.metadata_block``): the picture's file gets the rest, at least
    ``config.metadata.min_picture_bpp`` (the file is then over the rate asked for, which the rate check
    reports). A LimitError where the metadata alone leaves less than that under the ceiling."""
    extra = len(block[0]) + bitstream.metadata_overhead()
    pixels, cap = height * width, config.rate.max_bytes
    floor = config.metadata.min_picture_bpp * pixels / 8
    if cap is not None and cap - extra < floor:
        raise LimitError(f"the metadata alone takes {extra} bytes: with the picture, over the ceiling of {cap} "
                         f"bytes (--metadata none drops it)")
    left = max(config.rate.bpp * pixels / 8 - extra, floor)
    return replace(config, rate=replace(config.rate, bpp=8 * left / pixels,
                                        max_bytes=None if cap is None else int(cap - extra)))


def with_metadata(inner: EncodeResult, metadata: Metadata, block: tuple[bytes, bool], config: CodecConfig,
                  t0: float, rate_target: bool = True) -> EncodeResult:
    """``inner`` (the picture's file, made under :func:`metadata_room`) in a version-12 file with ``metadata``
    as ``block`` (``bitstream.metadata_block``); its rate checked against ``config``'s where ``rate_target`` (not
    after a PSNR search, whose target is the PSNR)."""
    s = inner.stats
    data = bitstream.pack_metadata(s.width, s.height, s.channels, *block, inner.data)
    notes = list(s.warnings)
    rate_ok = s.rate_ok
    if rate_target:
        rate_ok, notes = _rate_check(config, len(data), s.height, s.width, s.model)
    extra = len(data) - len(inner.data)
    if extra > config.metadata.warn_share * len(data):
        what = ", ".join(label(k) for k in metadata.kinds())
        notes.append(f"the metadata ({what}) takes {extra} of the file's {len(data)} bytes: --metadata none drops "
                     f"it" + (", --metadata icc keeps the colours alone" if metadata.icc and len(metadata.kinds()) > 1
                              else ""))
    stats = replace(s, bytes=len(data), bpp=8.0 * len(data) / (s.height * s.width),
                    target_bpp=config.rate.bpp if rate_target else s.target_bpp, rate_ok=rate_ok,
                    encode_seconds=time.perf_counter() - t0, max_bytes=config.rate.max_bytes,
                    metadata_bytes=len(block[0]), warnings=notes)
    return EncodeResult(data=data, stats=stats)


def _encode_siren(image: np.ndarray, config: CodecConfig, device: torch.device,
                  progress: ProgressFactory | None, t0: float, seen: np.ndarray | None = None) -> EncodeResult:
    """The PRANC SIREN path of :func:`encode`; it fits every pixel (``seen``: judged by those alone)."""
    height, width, channels = image.shape
    spec = plan(config, height, width, channels)
    grid = tile_grid(config, height, width)
    subspace = Subspace(spec, device)
    pixels = TileData.from_image(image, grid, device)

    k = spec.num_coefs
    if spec.offset:
        alpha0 = torch.zeros(k, device=device)
    else:
        # pure PRANC form: alpha = 0 would give a dead network, start from a unit-scale draw
        g = torch.Generator().manual_seed(config.fit.seed)
        alpha0 = (torch.rand(k, generator=g) * 2 - 1).mul_(math.sqrt(3.0)).to(device)

    fit = config.fit
    cb = progress("fit", fit.steps) if progress else None
    fit_stats: dict = {}
    alpha = fit_alpha(subspace, spec.shape, pixels, alpha0, fit, steps=fit.steps, lr=fit.lr, progress=cb,
                      stats=fit_stats)

    target_bytes = config.rate.bpp * height * width / 8.0
    tol = config.rate.tolerance
    shifts = [0] * len(spec.group_sizes())
    if config.quant.per_group_steps:
        h = group_sensitivity(subspace, spec.shape, pixels, alpha, config.quant.probe_step,
                              config.quant.probe_pixels, seed=fit.seed)
        shifts = shifts_for(h, spec.group_sizes())
    delta, data = _search_delta(spec, alpha.cpu().numpy(), shifts, target_bytes, grid)
    if fit.qat_steps > 0:
        cb = progress("quantization-aware fine-tune", fit.qat_steps) if progress else None
        steps = coef_steps(delta, shifts, spec.group_sizes())
        alpha = fit_alpha(subspace, spec.shape, pixels, alpha, fit, steps=fit.qat_steps,
                          lr=fit.qat_lr, steps_q=torch.from_numpy(steps).float().to(device), progress=cb)
        q = quantize(alpha.cpu().numpy(), steps)
        data = _pack(spec, q, delta, shifts, grid)
        if abs(len(data) - target_bytes) > tol * target_bytes:
            delta, data = _search_delta(spec, alpha.cpu().numpy(), shifts, target_bytes, grid)

    return _finish(image, data, config, device, t0, seen, num_coefs=k, num_params=spec.shape.num_params,
                   net_width=spec.shape.width, delta=delta, fit_restarts=fit_stats.get("restarts", 0), model="siren")


_NO_NETWORK = dict(num_coefs=0, num_params=0, net_width=0, delta=0.0)  # the stats of a version 9 or 10 file


def _palette(image: np.ndarray, config: CodecConfig, device: torch.device, t0: float,
             seen: np.ndarray | None = None) -> EncodeResult | None:
    """A palette file within the rate asked for and the ceiling (``lossless.palette_attempt``), measured, where
    ``config.lossless`` allows one and the picture has one; else None."""
    if config.lossless.mode != "auto" or not config.lossless.palette:
        return None
    data = lossless.palette_attempt(image, _budget(image, config), config.lossless)
    return None if data is None else _finish(image, data, config, device, t0, seen, model="palette", **_NO_NETWORK)


def _composite(image: np.ndarray, config: CodecConfig, device: torch.device, progress: ProgressFactory | None,
               t0: float, seen: np.ndarray | None = None) -> EncodeResult | None:
    """A composite file (``composite.attempt``), measured, where ``config`` allows one (``--lossless auto``, the
    grid model) and the picture is a screen with photographs in it; else None."""
    if config.lossless.mode != "auto" or config.model != "grid":
        return None

    def region(crop: np.ndarray, budget_bytes: float) -> bytes:
        # under a time budget, half of what is left: the whole picture's fit comes after the regions
        inner = time_share(_region_config(config, crop.shape[0], crop.shape[1], budget_bytes), t0, 2)
        return _encode_grid(crop, inner, device, progress, time.perf_counter()).data

    try:
        data = composite.attempt(image, _budget(image, config), config.composite, config.lossless, region, seen)
    except LimitError:  # a region's ceiling below its smallest file: the whole picture's fit may still fit
        return None
    # (its regions are fitted on every pixel, the hidden ones' filled colour too)
    return None if data is None else _finish(image, data, config, device, t0, seen, model="composite", **_NO_NETWORK)


def _region_config(config: CodecConfig, height: int, width: int, budget_bytes: float) -> CodecConfig:
    """The configuration a region of a composite file (height x width pixels, ``budget_bytes`` of the file) is
    fitted with: the rate of its budget (held to it as a ceiling where the picture has one), a network file."""
    cap = config.rate.max_bytes
    rate = replace(config.rate, bpp=8 * budget_bytes / (height * width),
                   max_bytes=None if cap is None else int(budget_bytes))
    rate = replace(rate, bpp=aim_bpp(rate, height, width))
    return replace(config, rate=rate, lossless=replace(config.lossless, mode="never"))


def _encode_split(image: np.ndarray, config: CodecConfig, device: torch.device, progress: ProgressFactory | None,
                  t0: float) -> EncodeResult:
    """A large picture as strips fitted side by side (split.py): a composite file of network files."""
    made = split.encode(image, _budget(image, config), time_share(config, t0),
                        lambda h, w, b: _region_config(config, h, w, b), progress=progress)
    return _finish(image, made.data, config, device, t0, model="composite", strips=made.strips,
                   decoded=made.picture, **_NO_NETWORK)


def _budget(image: np.ndarray, config: CodecConfig) -> float:
    """Bytes a version 9 file may take: the rate asked for, and no more than the ceiling."""
    height, width = image.shape[:2]
    budget = config.rate.bpp * height * width / 8.0
    return budget if config.rate.max_bytes is None else min(budget, config.rate.max_bytes)


def _better(kept: EncodeResult | None, other: EncodeResult, config: CodecConfig, t0: float) -> EncodeResult:
    """``other`` (a palette or composite file) where it is at least as good as ``kept`` (the network's file, or
    one that replaced it; None where there is none) in PSNR and, unless the fit aimed at plain squared error
    (``--tune psnr``), in MS-SSIM (where the picture has one); else ``kept``. Both were made for the same rate.
    The time is the whole encode's."""
    o = other.stats
    if kept is None:
        wins = True
    else:
        k = kept.stats
        judge_ms = config.grid.structure_mix > 0 and k.ms_ssim is not None and o.ms_ssim is not None
        wins = o.psnr >= k.psnr and (not judge_ms or o.ms_ssim >= k.ms_ssim)
    return replace(other, stats=replace(o, encode_seconds=time.perf_counter() - t0)) if wins else kept


def _lossless(image: np.ndarray, config: CodecConfig) -> bytes | None:
    """The picture's lossless file where ``config.lossless.mode`` asks for one: "always", or "auto" where it is
    no larger than the rate asked for and the ceiling; else None."""
    mode, cap = config.lossless.mode, config.rate.max_bytes
    if mode not in LOSSLESS_MODES:
        raise InputError(f"unknown lossless mode {mode!r} ({', '.join(LOSSLESS_MODES)})")
    if mode == "never":
        return None
    if mode == "always":
        data = lossless.encode(image, config.lossless)
        if cap is not None and len(data) > cap:
            raise LimitError(f"the lossless file takes {len(data)} bytes, over the ceiling of {cap}")
        return data
    return lossless.attempt(image, _budget(image, config), config.lossless)


def _encode_grid(image: np.ndarray, config: CodecConfig, device: torch.device,
                 progress: ProgressFactory | None, t0: float, seen: np.ndarray | None = None) -> EncodeResult:
    """The latent-grid path of :func:`encode` (grid_codec.py), fitted on the ``seen`` pixels (None: all)."""
    coded = grid_codec.fit_and_code(image, time_share(config, t0), device, progress, seen)
    height, width = image.shape[:2]
    shape = coded.shape
    return _finish(image, coded.data, config, device, t0, seen,
                   num_coefs=shape.num_latents(height, width) + shape.num_params,
                   num_params=shape.num_params, net_width=shape.hidden, delta=1.0, model="grid",
                   trim_sweeps=coded.trims, fit_restarts=coded.restarts, steps=coded.steps, sweeps=coded.sweeps)


def _finish(image: np.ndarray, data: bytes, config: CodecConfig, device: torch.device, t0: float,
            seen: np.ndarray | None = None, decoded: np.ndarray | None = None, **network: object) -> EncodeResult:
    """Check the rate and measure exactly what the decoder will produce; ``network``: the model's stats fields.
    ``seen``: bool (H, W), the pixels that are judged (of a picture with transparency: PSNR over them alone,
    MS-SSIM with the others as in ``image``); None: all. ``decoded``: what ``data`` decodes to, where the
    encoder has it already (uint8 (H, W, C)); else it is decoded on every core (numpy's work: the same pixels
    with any thread count, and no spinning threads to slow a process beside it)."""
    height, width, channels = image.shape
    rate_ok, notes = _rate_check(config, len(data), height, width, str(network.get("model")))
    m, ms = judged(image, decode(data, threads=available_cores()) if decoded is None else decoded, seen)
    stats = EncodeStats(
        width=width, height=height, channels=channels, bytes=len(data),
        bpp=8.0 * len(data) / (height * width), target_bpp=config.rate.bpp, rate_ok=rate_ok,
        psnr=psnr_of_mse(m), ms_ssim=ms,
        encode_seconds=time.perf_counter() - t0, device=str(device), warnings=notes, max_bytes=config.rate.max_bytes,
        **network,
    )
    return EncodeResult(data=data, stats=stats)


# in the rate's warning; time_checked words an undershoot under --time. It said "not reachable for this image",
# which was untrue of most files that warned: the fast preset's kodim23 at 1 bpp (0.893) reaches it by default
RATE_MISSED = "bpp missed"  # the phrase time_checked rewords (no other warning holds it)


def _rate_check(config: CodecConfig, size: int, height: int, width: int, model: str) -> tuple[bool, list[str]]:
    """Whether a file of ``size`` bytes of a height x width picture, made by ``model``, is within the rate's
    tolerance of the target, and the warning where it is not."""
    target_bytes = config.rate.bpp * height * width / 8.0
    over, tol = size - target_bytes, config.rate.tolerance * target_bytes
    if model in ("lossless", "palette"):
        # under the target is no miss: a lossless file is exact, a palette file won over the network's file of
        # that rate (its colours are as many as the rate holds, or all it may have); "always" asks no rate
        rate_ok = over <= tol or config.lossless.mode == "always"
    else:
        rate_ok = abs(over) <= tol
    return rate_ok, [] if rate_ok else [f"target {config.rate.bpp:g} {RATE_MISSED} "
                                        f"(got {8 * size / (height * width):.4g} bpp, more than "
                                        f"{config.rate.tolerance:.0%} off)"]


def read_header(data: bytes) -> Header | GridHeader | LosslessHeader:
    """Parse and validate the header only (no decoding)."""
    return bitstream.parse(data)[0]


def decode_siren(header: Header, payload: bytes, device: str = "cpu") -> np.ndarray:
    """A version-3 (PRANC SIREN) file's payload -> uint8 image (H, W, C); ``decoder.decode`` dispatches here.

    The result is the same on every machine: the basis is generated with integer
    arithmetic and the network is evaluated in float64.
    """
    spec = header.spec
    sizes = spec.group_sizes()
    q = entropy.decode(payload, sizes, list(header.models))
    alpha = dequantize(q, coef_steps(header.delta, header.shifts, sizes))
    dev = resolve_device(device)
    thetas = [t.to(dev) for t in reconstruct(spec, alpha)]
    grid = header.grid
    out = np.empty((header.height, header.width, spec.shape.channels), dtype=np.uint8)
    for t, (y0, y1, x0, x1) in enumerate(grid.boxes()):
        out[y0:y1, x0:x1] = render([th[t] for th in thetas], spec.shape, y1 - y0, x1 - x0).numpy()
    return out


def fit_threads(config: CodecConfig) -> int:
    """torch intra-op threads an encode runs on in this process: ``fit.threads``, where 0 (the default) is one
    (FitConfig.threads)."""
    return config.fit.threads or 1
