"""The loop filter (format versions 6 and 7): exact integer filtering, the least-squares fit, the container."""
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from pranc_codec import FormatError, bitstream, decode, encode
from pranc_codec.config import CodecConfig, FilterConfig, apply_overrides
from pranc_codec.grid_codec import GridCode, pack
from pranc_codec.loop_filter import MAX_COEF, LoopFilter, apply, filter_bits, fit_filter, num_features, offsets

from .conftest import smooth_image
from .test_grid import _synthetic


def _reference(image: np.ndarray, flt: LoopFilter) -> np.ndarray:
    """The filter as FORMAT.md writes it, in Python integers over int64 arrays (no float anywhere)."""
    H, W, C = image.shape
    r = flt.taps // 2
    x = np.pad(image.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="edge")
    out = np.empty_like(image)
    for c in range(C):
        acc = np.full((H, W), int(flt.coefs[c, -1]), dtype=np.int64)
        j = 0
        for ci in range(C):
            for dy, dx in offsets(flt.taps, flt.symmetric):
                f = x[r + dy: r + dy + H, r + dx: r + dx + W, ci]
                if flt.symmetric and (dy, dx) != (0, 0):
                    f = f + x[r - dy: r - dy + H, r - dx: r - dx + W, ci]
                acc += int(flt.coefs[c, j]) * f
                j += 1
        corr = (acc + (1 << flt.shift >> 1)) >> flt.shift  # arithmetic shift: floor
        out[..., c] = np.clip(image[..., c].astype(np.int64) + corr, 0, 255)
    return out


def _random_filter(rs, channels: int, taps: int, symmetric: bool, shift: int, scale: float) -> LoopFilter:
    m = num_features(channels, taps, symmetric)
    q = np.rint(rs.laplace(0, scale, size=(channels, m))).clip(-(MAX_COEF - 1), MAX_COEF - 1)
    return LoopFilter(taps, symmetric, shift, q.astype(np.int32))


@pytest.mark.parametrize("taps", [3, 5, 7])
@pytest.mark.parametrize("symmetric", [False, True])
def test_filtering_is_exact_integer_arithmetic(taps, symmetric):
    """The float64 convolution equals the integer definition on every pixel, borders and clamping included,
    for small filters and for coefficients near the largest a file may hold."""
    rs = np.random.RandomState(taps + 10 * symmetric)
    image = (rs.rand(23, 31, 3) * 256).astype(np.uint8)
    for shift, scale in ((8, 40.0), (12, 3e3), (16, 4e6)):
        flt = _random_filter(rs, 3, taps, symmetric, shift, scale)
        assert np.array_equal(apply(image, flt), _reference(image, flt))
    grey = image[..., :1].copy()
    flt = _random_filter(rs, 1, taps, symmetric, 10, 300.0)
    assert np.array_equal(apply(grey, flt), _reference(grey, flt))


def test_strips_filtered_side_by_side_are_exact(monkeypatch):
    """apply(threads=N) over many strips of rows (each reading its neighbours' rows at the seams) is the integer
    definition too."""
    from pranc_codec import grid_decode

    rs = np.random.RandomState(7)
    image = (rs.rand(40, 29, 3) * 256).astype(np.uint8)
    monkeypatch.setattr(grid_decode, "_STRIP_PIXELS", 29 * 3)
    for taps, symmetric in ((7, False), (5, True)):
        flt = _random_filter(rs, 3, taps, symmetric, 10, 300.0)
        for threads in (1, 2, 3):
            assert np.array_equal(apply(image, flt, threads), _reference(image, flt))


def test_filtering_in_strips_equals_one_pass(monkeypatch):
    import pranc_codec.grid_decode as gd

    rs = np.random.RandomState(3)
    image = (rs.rand(40, 29, 3) * 256).astype(np.uint8)
    flt = _random_filter(rs, 3, 7, False, 10, 200.0)
    whole = apply(image, flt)
    monkeypatch.setattr(gd, "_STRIP_PIXELS", 29 * 3)  # strips of 3 rows
    assert np.array_equal(apply(image, flt), whole)


def _blurred(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured picture and a blurred, colour-shifted copy: what a filter can undo."""
    rs = np.random.RandomState(seed)
    sharp = (smooth_image(48, 64, 3, seed=seed).astype(np.float64) + rs.rand(48, 64, 3) * 60).clip(0, 255)
    pad = np.pad(sharp, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(pad[1 + dy: 49 + dy, 1 + dx: 65 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    return sharp.round().astype(np.uint8), (blur * 0.9 + 12).round().astype(np.uint8)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_fit_undoes_a_blur_and_a_colour_shift():
    sharp, blurred = _blurred()
    flt = fit_filter(blurred, sharp, 0.0, FilterConfig())
    assert flt is not None and flt.taps == 7  # with free bits the largest filter fits best
    assert _mse(apply(blurred, flt), sharp) < 0.5 * _mse(blurred, sharp)
    # and no smaller or symmetric candidate does better on the picture it was fitted to
    for taps in (3, 5):
        for sym in (False, True):
            other = fit_filter(blurred, sharp, 0.0, FilterConfig(taps=(taps,), symmetric=(sym,)))
            assert _mse(apply(blurred, other), sharp) >= _mse(apply(blurred, flt), sharp)


def test_fit_in_strips_equals_one_pass(monkeypatch):
    """The least squares' sums over strips of rows (one feature matrix reused strip after strip, made anew for
    the shorter last strip) are every pixel's sums: integers, exact in float64 in any order, so the very same
    filter as from one strip of the whole picture, with and without a mask of seen pixels."""
    import pranc_codec.grid_decode as gd

    sharp, blurred = _blurred(1)  # 48 x 64
    seen = np.random.RandomState(5).rand(48, 64) < 0.6
    whole = [fit_filter(blurred, sharp, 1e-6, FilterConfig(), seen=s) for s in (None, seen)]
    assert all(f is not None and f.taps == 7 for f in whole)
    monkeypatch.setattr(gd, "_STRIP_PIXELS", 64 * 5)  # strips of 5 rows, the last of 3
    assert len({r1 - r0 for r0, r1 in gd.filter_strips(48, 64)}) == 2
    for f, s in zip(whole, (None, seen)):
        strips = fit_filter(blurred, sharp, 1e-6, FilterConfig(), seen=s)
        assert (strips.taps, strips.symmetric, strips.shift) == (f.taps, f.symmetric, f.shift)
        assert np.array_equal(strips.coefs, f.coefs)
    assert not np.array_equal(whole[0].coefs, whole[1].coefs)  # the mask is read


def test_coefficients_rounded_by_gptq_keep_the_filter_at_a_coarser_precision():
    """Rounding each coefficient with its error spread over those not yet rounded (quantization.gptq_round, on the
    least squares' own Gram matrix) keeps a coarse filter near the unrounded one, where plain rounding of the
    highly correlated neighbourhood features loses most of the gain; with bits priced, the filter chosen costs
    no more than plain rounding's choice and is no larger."""
    sharp, blurred = _blurred()
    one = dict(taps=(7,), symmetric=(False,))
    fine = fit_filter(blurred, sharp, 0.0, FilterConfig(shifts=(14,), **one))
    for shift in (6, 8):
        plain = fit_filter(blurred, sharp, 0.0, FilterConfig(shifts=(shift,), gptq=False, **one))
        gptq = fit_filter(blurred, sharp, 0.0, FilterConfig(shifts=(shift,), gptq=True, **one))
        assert gptq.shift == plain.shift == shift and np.abs(gptq.coefs).max() < MAX_COEF
        loss = [_mse(apply(blurred, f), sharp) - _mse(apply(blurred, fine), sharp) for f in (plain, gptq)]
        assert loss[1] < 0.5 * loss[0]
    n = sharp.shape[0] * sharp.shape[1]

    def cost(f, lam):
        return _mse(apply(blurred, f), sharp) / 255 ** 2 + lam * filter_bits(f.coefs) / n

    for lam in (1e-6, 1e-5):
        plain = fit_filter(blurred, sharp, lam, FilterConfig(gptq=False))
        gptq = fit_filter(blurred, sharp, lam, FilterConfig(gptq=True))
        assert cost(gptq, lam) <= cost(plain, lam) and filter_bits(gptq.coefs) <= filter_bits(plain.coefs)


@pytest.mark.parametrize("case", ["grey as RGB", "flat", "two equal channels", "2 x 2"])
def test_fit_is_defined_on_degenerate_pictures(case):
    """Features that repeat one another or never vary leave the least squares' Gram matrix singular; GPTQ's
    factor then takes more damping (quantization.gptq_factor) and the fit still returns a filter or none."""
    sharp, blurred = _blurred()
    decoded, original = {
        "grey as RGB": (blurred[..., :1].repeat(3, 2), sharp[..., :1].repeat(3, 2)),
        "flat": (np.full_like(sharp, 100), sharp),
        "two equal channels": (np.concatenate([blurred[..., :2], blurred[..., 1:2]], axis=2), sharp),
        "2 x 2": (blurred[:2, :2], sharp[:2, :2])}[case]
    decoded, original = np.ascontiguousarray(decoded), np.ascontiguousarray(original)
    for lam in (0.0, 1e-5):
        flt = fit_filter(decoded, original, lam, FilterConfig())
        if flt is not None:
            assert np.abs(flt.coefs).max() < MAX_COEF
            assert _mse(apply(decoded, flt), original) <= _mse(decoded, original)


def test_fit_weighs_bits_against_distortion():
    sharp, blurred = _blurred()
    assert fit_filter(blurred, sharp, 1e3, FilterConfig()) is None  # bits far too dear
    assert fit_filter(sharp, sharp, 1e-6, FilterConfig()) is None  # nothing to gain
    assert fit_filter(blurred, sharp, 0.0, FilterConfig(enabled=False)) is None
    cheap = fit_filter(blurred, sharp, 1e-5, FilterConfig())
    free = fit_filter(blurred, sharp, 0.0, FilterConfig())
    assert cheap is not None and cheap.coefs.size <= free.coefs.size


def test_fit_keeps_to_the_bits_it_is_given():
    """``max_bits`` (the room left under the file's rate cap, FilterConfig.max_overshoot) rules out larger
    filters: the best of the smaller ones is kept, or none."""
    sharp, blurred = _blurred()
    free = fit_filter(blurred, sharp, 0.0, FilterConfig())
    room = filter_bits(free.coefs) - 1
    capped = fit_filter(blurred, sharp, 0.0, FilterConfig(), max_bits=room)
    assert capped is not None and filter_bits(capped.coefs) <= room < filter_bits(free.coefs)
    assert _mse(apply(blurred, capped), sharp) < _mse(blurred, sharp)  # still a filter that helps
    assert fit_filter(blurred, sharp, 0.0, FilterConfig(), max_bits=0.0) is None


def _v6(flt: LoopFilter | None = None) -> tuple[bytes, LoopFilter]:
    code, shape = _synthetic()
    rs = np.random.RandomState(7)
    flt = flt or _random_filter(rs, 3, 5, True, 10, 30.0)
    return pack(GridCode(code.latents, code.mlp_q, code.mlp_steps, flt), shape, 37, 53), flt


def test_filtered_file_is_the_unfiltered_picture_filtered():
    code, shape = _synthetic()
    plain = decode(pack(code, shape, 37, 53))
    data, flt = _v6()
    assert data[4] == 8 == bitstream.GRID_VERSION and data[5] == bitstream.GRID_FLAG_FILTER
    header, payload = bitstream.parse(data)
    assert (header.filter_taps, header.filter_symmetric, header.filter_shift) == (5, True, 10)
    assert bitstream.pack_grid(header, bitstream.split_segments(header, payload)) == data
    assert np.array_equal(decode(data), _reference(plain, flt))


def test_golden_filtered_file_and_pixels():
    """Pins version 8 with a filter: a fixed code and filter must give these bytes and decode to these pixels
    everywhere."""
    data, _ = _v6()
    assert hashlib.sha256(data).hexdigest()[:16] == "846db0fc26a13ffc"
    assert hashlib.sha256(decode(data).tobytes()).hexdigest()[:16] == "a10dab92ccf5b7fb"


def _golden(name: str) -> bytes:
    """A file of tests/data: the code and filter of :func:`_v6` written by an older encoder."""
    return (Path(__file__).parent / "data" / name).read_bytes()


def _golden_v6() -> bytes:
    return _golden("golden_v6.prc")


def _golden_v7() -> bytes:
    return _golden("golden_v7_filter.prc")


@pytest.mark.parametrize("version,name,digest", [(6, "golden_v6.prc", "df72ef9d4a870833"),
                                                 (7, "golden_v7_filter.prc", "86968df91410fd67")])
def test_older_filtered_files_still_decode_to_the_same_pixels(version, name, digest):
    data = _golden(name)
    assert data[4] == version and hashlib.sha256(data).hexdigest()[:16] == digest
    header, payload = bitstream.parse(data)
    assert header.version == version
    assert (header.filter_taps, header.filter_symmetric, header.filter_shift) == (5, True, 10)
    assert bitstream.pack_grid(header, bitstream.split_segments(header, payload)) == data
    new, _ = _v6()
    assert len(new) < len(data) and np.array_equal(decode(data), decode(new))


def _with_crc(body: bytes) -> bytes:
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def _filter_record(data: bytes) -> int:
    """Offset of the filter record: in version 8 after the MLP's steps, in 6 and 7 before the payload length."""
    header, payload = bitstream.parse(data)
    if header.version == 8:
        return bitstream._GRID_FIXED.size + 4 * (header.shape.hidden_layers + 1)
    return len(data) - 4 - len(payload) - 4 - bitstream._FILTER.size


@pytest.mark.parametrize("version", [8, 7])
@pytest.mark.parametrize("field,value,match", [(0, 4, "taps"), (0, 0, "taps"), (1, 2, "symmetry"),
                                               (2, 0, "shift"), (2, 17, "shift")])
def test_bad_filter_fields_give_one_line_errors(version, field, value, match):
    data = _v6()[0] if version == 8 else _golden_v7()
    b = bytearray(data)
    b[_filter_record(data) + field] = value
    with pytest.raises(FormatError, match=match) as e:
        decode(_with_crc(bytes(b)))
    assert "\n" not in str(e.value)


def test_oversized_filter_coefficient_is_refused():
    code, shape = _synthetic()
    rs = np.random.RandomState(1)
    flt = _random_filter(rs, 3, 3, False, 8, 10.0)
    flt.coefs[1, 4] = MAX_COEF
    data = pack(GridCode(code.latents, code.mlp_q, code.mlp_steps, flt), shape, 37, 53)
    with pytest.raises(FormatError, match="loop filter coefficient"):
        decode(data)


@pytest.mark.parametrize("version", [6, 7])
def test_every_truncation_and_bit_flip_of_a_filtered_file_is_refused(version):
    data = _golden_v6() if version == 6 else _v6()[0]
    for n in range(0, len(data), 3):
        with pytest.raises(FormatError):
            decode(data[:n])
    for i in range(0, len(data), max(1, len(data) // 150)):
        e = bytearray(data)
        e[i] ^= 0x10
        with pytest.raises(FormatError):
            decode(bytes(e))


def _grating(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth picture under a fine grating (periods of 4 and 5.2 pixels): a short fit leaves it soft."""
    y, x = np.mgrid[0:height, 0:width]
    g = 40 * np.sin(2 * np.pi * x / 4) * np.sin(2 * np.pi * y / 5.2)
    return (smooth_image(height, width, 3, seed=2) * 0.6 + 50 + g[..., None]).clip(0, 255).round().astype(np.uint8)


def test_encoder_writes_a_filter_only_when_it_pays():
    """On a picture the network leaves soft the encoder keeps a filter (flagged in the header) and the
    decoder's pixels are what it measured; with the filter off the same fit gives a file without and lower PSNR.

    The margin is wide on purpose: with fit seeds 0-13 on the CPU the filter was kept every time, 2.5-4.7 dB
    ahead. (The earlier noise picture kept it with seed 0 only, and not on CUDA, whose sums differ.)"""
    from pranc_codec.metrics import psnr

    sharp = _grating()
    cfg = apply_overrides(CodecConfig(), ["rate.bpp=3", "grid.steps=300", "grid.batch_pixels=1024"])
    on = encode(sharp, cfg)
    off = encode(sharp, apply_overrides(cfg, ["filter.enabled=false"]))
    assert on.data[4] == 8 == off.data[4] and (on.data[5], off.data[5]) == (bitstream.GRID_FLAG_FILTER, 0)
    assert psnr(sharp, decode(on.data)) == on.stats.psnr
    assert on.stats.psnr > off.stats.psnr + 1.0
    # held to 64 bits under that file (filter.max_overshoot below 0: since session 53's cheaper MLP the file lands
    # 2 % under its rate, where the filter's cap of the rate itself no longer binds), a smaller filter is kept
    cap = 8 * len(on.data) - 64
    held = encode(sharp, apply_overrides(cfg, [f"filter.max_overshoot={cap / (3 * 64 * 48) - 1}"]))
    assert held.data[5] == bitstream.GRID_FLAG_FILTER and 8 * len(held.data) <= cap
    assert off.stats.psnr < held.stats.psnr < on.stats.psnr
    # coefficients rounded one by one at the precisions of the filters before GPTQ: a larger file, a lower PSNR
    # (3.076 bpp and 33.56 dB against 2.992 and 34.04; the file a few per cent over its rate)
    plain = encode(sharp, apply_overrides(cfg, ["filter.gptq=false", "filter.shifts=8,10,12"]))
    assert plain.data[5] == bitstream.GRID_FLAG_FILTER
    assert plain.stats.bpp > on.stats.bpp and plain.stats.psnr < on.stats.psnr


def test_info_shows_the_filter(tmp_path):
    import json

    from click.testing import CliRunner

    from pranc_codec.cli import main

    data, flt = _v6()
    path = tmp_path / "f.prc"
    path.write_bytes(data)
    r = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["version"] == 8
    assert info["loop_filter"] == {"taps": 5, "symmetric": True, "shift": 10, "coefficients": flt.coefs.size}


def _first_bucket_model(data: bytes) -> int:
    """Offset of the first bucket model of a version-7 file: after the fixed fields and the first count."""
    return bitstream._GRID_FIXED.size + bitstream._BUCKETS.size


@pytest.mark.parametrize("offset,value,match", [
    (5, 0x02, "flags"), (5, 0x81, "flags"),  # unknown flag bits
    ("bound", 255, "model index"), ("bound", 254, "model index"),  # past the end of the bounds' table
])
def test_bad_version7_fields_give_one_line_errors(offset, value, match):
    data = _golden_v7()
    b = bytearray(data)
    b[_first_bucket_model(data) + 1 if offset == "bound" else offset] = value
    with pytest.raises(FormatError, match=match) as e:
        decode(_with_crc(bytes(b)))
    assert "\n" not in str(e.value)


def test_filter_flag_is_version7s_alone():
    """Version 5 and 6 files have no flags; a version-7 or 8 file without the flag has no filter record, so
    setting it (or clearing it on a filtered file) misreads the layout and is refused."""
    v5 = (Path(__file__).parent / "data" / "golden_v5.prc").read_bytes()
    for data in (v5, _golden_v6()):
        b = bytearray(data)
        b[5] = bitstream.GRID_FLAG_FILTER
        with pytest.raises(FormatError, match="flags"):
            decode(_with_crc(bytes(b)))
    code, shape = _synthetic()
    for data, flag in ((pack(code, shape, 37, 53), bitstream.GRID_FLAG_FILTER), (_v6()[0], 0),
                       ((Path(__file__).parent / "data" / "golden_v7.prc").read_bytes(), bitstream.GRID_FLAG_FILTER),
                       (_golden_v7(), 0)):
        b = bytearray(data)
        b[5] = flag
        with pytest.raises(FormatError):
            decode(_with_crc(bytes(b)))
