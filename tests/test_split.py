"""A large picture as strips of columns fitted side by side (split.py): a composite file of network files."""
from dataclasses import replace
from typing import Callable

import numpy as np
import pytest

from pranc_codec import CodecConfig, bitstream, decode, encode, grid_decode, seam, split
from pranc_codec.composite import Box
from pranc_codec.config import SplitConfig
from pranc_codec.errors import LimitError
from pranc_codec.metrics import psnr

from .test_composite import photo


@pytest.fixture(autouse=True)
def _torch_threads():
    """Encodes here set torch's thread count (one, two, the CLI's --threads 1): the tests after these run with the
    count they had (a ceiling test's close call in test_ceiling.py tips on it)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def quick(bpp: float = 1.0, **split_fields) -> CodecConfig:
    """A fast grid encode that splits any picture (``min_pixels`` 1) unless told otherwise."""
    c = CodecConfig()
    return replace(c, rate=replace(c.rate, bpp=bpp), grid=replace(c.grid, steps=300),
                   split=replace(c.split, **{"min_pixels": 1, **split_fields}))


def recorder() -> tuple[list[list], Callable]:
    """A progress factory that records each bar it opens as [name, total, count so far], and every update as a
    step forward."""
    shown: list[list] = []

    def progress(name: str, total: int, unit: str = "step"):
        entry = [name, total, 0]
        shown.append(entry)

        def update(n: int, loss: float) -> None:
            assert n > 0
            entry[2] += n
        return update

    return shown, progress


def test_strips_cover_the_picture_in_aligned_columns():
    cfg = SplitConfig(min_pixels=1000, min_strips=2, max_strips=2, align=64)
    assert split.strips(20, 40, cfg) == [Box(0, 0, 40, 20)]  # 800 pixels: whole
    assert split.strips(2048, 3072, cfg) == [Box(0, 0, 1536, 2048), Box(1536, 0, 1536, 2048)]
    # widths multiples of 64 as near equal as they go (15 units of 64 in two: 8 and 7), the last with the rest
    assert split.strips(100, 1000, cfg) == [Box(0, 0, 512, 100), Box(512, 0, 488, 100)]
    three = split.strips(100, 1000, replace(cfg, min_strips=3, max_strips=3))
    assert [b.w for b in three] == [320, 320, 360] and sum(b.w for b in three) == 1000
    # a portrait picture too (rows measured level, ABLATIONS.md BB3)
    assert split.strips(3072, 2048, cfg) == [Box(0, 0, 1024, 3072), Box(1024, 0, 1024, 3072)]
    # never a strip narrower than the alignment
    assert split.strips(1000, 100, cfg) == [Box(0, 0, 100, 1000)]
    assert split.strips(100, 127, cfg) == [Box(0, 0, 127, 100)]
    assert len(split.strips(100, 130, cfg)) == 2


def test_larger_files_get_more_strips_up_to_eight():
    cfg = SplitConfig()  # a strip per 300 k bits and 0.75 megapixels, two, four or eight, over 1.5
    assert len(split.strips(512, 768, cfg, 8e6)) == 1  # Kodak's size: whole at any rate
    assert [b.w for b in split.strips(1024, 1536, cfg)] == [768, 768]  # 1.57 megapixels: two at least
    # at 1 bpp, 1.57 M bits, but no strip under 0.75 megapixels: still two
    assert len(split.strips(1024, 1536, cfg, 1024 * 1536 * 1.0)) == 2
    # 2.4 megapixels: three at most, but strips come in pairs (three on two cores left one idle)
    assert len(split.strips(1024, 2304, cfg, 1024 * 2304 * 1.0)) == 2
    assert [b.w for b in split.strips(2048, 3072, cfg, 2048 * 3072 * 0.1)] == [1536] * 2  # 629 k bits: two
    assert [b.w for b in split.strips(2048, 3072, cfg, 2048 * 3072 * 0.15)] == [1536] * 2  # 944 k bits: not three
    assert len(split.strips(2048, 3072, cfg, 1.2e6)) == 4
    assert len(split.strips(192, 8192, cfg, 8e6)) == 2  # 1.57 megapixels: two of 0.75 at most
    assert split.strips(100, 16384, cfg, 8e6) == [Box(0, 0, 8192, 100), Box(8192, 0, 8192, 100)]
    assert len(split.strips(16384, 100, cfg, 8e6)) == 1  # one column of 64 at most: whole
    assert [b.w for b in split.strips(2048, 3072, cfg, 2048 * 3072 * 0.25)] == [768] * 4  # 1.57 M bits: four
    assert [b.w for b in split.strips(2048, 3072, cfg, 2048 * 3072 * 0.3)] == [768] * 4  # 1.89 M bits: not six
    assert [b.w for b in split.strips(3072, 3840, cfg, 3072 * 3840 * 0.15)] == [960] * 4  # 1.77 M bits: four
    # 2.95 M bits: eight, of 60 units of 64 columns: 8 units for the first four, 7 for the others
    assert [b.w for b in split.strips(3072, 3840, cfg, 3072 * 3840 * 0.25)] == [512] * 4 + [448] * 4
    assert [b.w for b in split.strips(2048, 3072, cfg, 2048 * 3072 * 0.5)] == [384] * 8  # 3.15 M bits: eight
    assert len(split.strips(2048, 3072, cfg, 2048 * 3072 * 4.0)) == 8  # 25 M bits: still eight at most
    assert len(split.strips(2048, 3072, replace(cfg, max_strips=64), 2048 * 3072 * 4.0)) == 8  # a file's most
    assert len(split.strips(1024, 2048, cfg, 2048 * 1024 * 4.0)) == 2  # 2.1 megapixels: no strip under 0.75


def test_a_busier_strip_gets_more_of_the_rate_within_the_cap():
    flat = np.full((64, 128, 3), 120, np.uint8)
    busy = photo(64, 128)
    boxes = [Box(0, 0, 128, 64), Box(128, 0, 128, 64)]
    even = split.shares(np.concatenate([busy, busy], axis=1), boxes, SplitConfig())
    assert even == pytest.approx([0.5, 0.5])
    s = split.shares(np.concatenate([flat, busy], axis=1), boxes, SplitConfig(max_ratio=100.0))
    assert sum(s) == pytest.approx(1.0) and s[1] > 0.99  # a flat strip costs next to nothing
    capped = split.shares(np.concatenate([flat, busy], axis=1), boxes, SplitConfig(max_ratio=2.0))
    assert capped == pytest.approx([0.2, 0.8], abs=1e-3)  # 0.5 and 2 x the mean rate, renormalised


def test_only_large_pictures_on_the_cpu_with_the_grid_model_are_split():
    img = photo(64, 256)
    assert split.applies(img, quick(), on_cpu=True)
    assert not split.applies(img, quick(), on_cpu=False)
    assert not split.applies(img, replace(quick(), model="siren"), on_cpu=True)
    assert not split.applies(img, quick(min_pixels=64 * 256 + 1), on_cpu=True)
    assert not split.applies(img, quick(enabled=False), on_cpu=True)
    # the default's threshold: 1.5 megapixels (1536 x 1024 is split; Kodak's 768 x 512 is not)
    assert split.applies(np.zeros((1000, 1500, 3), np.uint8), CodecConfig(), on_cpu=True)
    assert not split.applies(np.zeros((999, 1500, 3), np.uint8), CodecConfig(), on_cpu=True)


def test_a_split_file_is_a_composite_of_strips_the_same_from_one_process_or_two():
    img = photo(96, 256)
    phases, progress = recorder()
    one = encode(img, replace(quick(0.5), fit=replace(CodecConfig().fit, threads=1)))  # in this process
    two = encode(img, replace(quick(0.5), fit=replace(CodecConfig().fit, threads=2)), progress)  # two children
    assert one.data == two.data
    # side by side: one bar of both strips' fitting steps, each step counted once, then one of both strips'
    # rounding sweeps, then one of the strips
    steps = 2 * split.fit_steps(img[:, :128], replace(quick(0.5), grid=replace(quick(0.5).grid, steps=300)))
    sweeps = 2 * CodecConfig().rounding.sweeps
    assert phases == [["fit", steps, steps], ["rounding", sweeps, sweeps], ["strips", 2, 2]]
    s = two.stats
    assert s.model == "composite" and s.strips == 2 and s.rate_ok and abs(s.bpp - 0.5) <= 0.05
    header, _ = bitstream.parse(two.data)
    assert [(g.x, g.y, g.header.width, g.header.height) for g in header.regions] == [(0, 0, 128, 96), (128, 0, 128, 96)]
    out = decode(two.data)
    assert out.shape == img.shape and s.psnr == pytest.approx(psnr(out, img)) and s.psnr > 20
    pasted = np.empty_like(img)
    for g in header.regions:  # each strip is its own network file, pasted where it belongs
        strip = grid_decode.decode(g.header, g.payload)
        pasted[:, g.x: g.x + g.header.width] = strip
        assert psnr(strip, img[:, g.x: g.x + g.header.width]) > 20
    # then the seam between them filtered at the strength nearest the original
    seams = [(128, 0, 96)]
    assert header.seam == seam.choose(pasted, img, seams)
    assert np.array_equal(out, seam.apply(pasted, seams, header.seam))
    assert np.array_equal(out[:, :128 - 3], pasted[:, :128 - 3]) and np.array_equal(out[:, 131:], pasted[:, 131:])
    # (on a picture this small a second network costs more than it gains: the whole picture's fit is better,
    # and pictures under SplitConfig.min_pixels are fitted whole)
    whole = encode(img, quick(0.5, enabled=False))
    assert whole.stats.model == "grid" and whole.stats.strips == 0


def test_the_split_gives_back_what_its_file_decodes_to(monkeypatch):
    """The encoder measures a split file on the picture its seam filter's choice decoded, not on a second decode
    (12-18 s at 24 megapixels): that picture must be the decoder's to the last pixel, filtered seams and all."""
    from pranc_codec import codec

    img = photo(96, 256)
    cfg = quick(0.5)
    for strength in (None, 2):  # the seam filter as chosen, then forced on
        if strength is not None:
            monkeypatch.setattr(seam, "choose", lambda *a: strength)
        made = split.encode(img, 0.5 * 96 * 256 / 8, cfg, lambda h, w, b: codec._region_config(cfg, h, w, b),
                            workers=1)
        assert made.strips == 2 and made.picture.shape == img.shape
        assert strength is None or bitstream.parse(made.data)[0].seam == strength
        assert np.array_equal(made.picture, decode(made.data))


def test_a_strips_failure_in_its_child_is_the_same_error():
    img = photo(64, 256)

    def tiny(h: int, w: int, budget: float) -> CodecConfig:  # a ceiling below any file's header
        c = quick(1.0)
        return replace(c, rate=replace(c.rate, max_bytes=10))

    for workers in (1, 2):
        with pytest.raises(LimitError, match="10 bytes"):
            split.encode(img, 2000.0, quick(1.0), tiny, workers)


def test_a_strips_failure_stops_the_others_at_once():
    import time

    img = photo(64, 320)  # strips 192 and 128 wide

    def one_fails(h: int, w: int, budget: float) -> CodecConfig:
        c = quick(1.0)
        if w == 128:  # a ceiling below any file's header: fails before fitting
            return replace(c, rate=replace(c.rate, max_bytes=10))
        return replace(c, grid=replace(c.grid, steps=10 ** 7))  # hours, unless it is stopped

    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="10 bytes"):
        split.encode(img, 4000.0, quick(1.0), one_fails, workers=2)
    assert time.perf_counter() - t0 < 60


def test_strips_run_side_by_side_as_the_cores_and_the_memory_allow():
    boxes = split.strips(2048, 3072, SplitConfig())  # two of 3.1 megapixels: about 1.5 GB each at the peak
    assert split.workers_for(boxes, 1, None) == 1
    assert split.workers_for(boxes, 2, None) == 2
    assert split.workers_for(boxes, 16, None) == 2
    assert split.workers_for(boxes, 16, 8e9) == 2
    assert split.workers_for(boxes, 16, 2e9) == 1  # one at a time: in this process
    four = split.strips(2048, 3072, SplitConfig(), 2e6)  # four: as many side by side as cores
    assert split.workers_for(four, 2, None) == 2 and split.workers_for(four, 16, None) == 4
    eight = split.strips(3072, 3840, SplitConfig(), 3e6)
    assert len(eight) == 8 and split.workers_for(eight, 4, None) == 4 and split.workers_for(eight, 16, None) == 8


def test_cli_encodes_a_large_picture_as_strips(tmp_path):
    import json

    from click.testing import CliRunner
    from PIL import Image

    from pranc_codec.cli import main

    png, prc, out = tmp_path / "big.png", tmp_path / "big.prc", tmp_path / "out.png"
    Image.fromarray(photo(1000, 1536)).save(png)  # 1.54 megapixels: over the default's threshold
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "--bpp", "0.1", "--steps", "60", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["model"] == "composite" and s["strips"] == 2 and s["rate_ok"] and s["psnr"] > 25
    r = runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "b.prc"), "--bpp", "0.1", "--steps", "60",
                             "--threads", "1"])
    assert r.exit_code == 0 and "fitted as 2 strips side by side" in r.output
    assert (tmp_path / "b.prc").read_bytes() == prc.read_bytes()  # one process or two: the same file
    info = json.loads(runner.invoke(main, ["info", str(prc), "--json"]).output)
    assert [(g["x"], g["y"], g["width"], g["height"]) for g in info["regions"]] == [(0, 0, 768, 1000),
                                                                                    (768, 0, 768, 1000)]
    assert info["seam_filter"] == bitstream.parse(prc.read_bytes())[0].seam in (0, 1, 2, 3)
    assert runner.invoke(main, ["decode", str(prc), "-o", str(out)]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out)), decode(prc.read_bytes()))


def test_a_ceiling_holds_for_a_split_file():
    img = photo(96, 256)
    c = quick(1.0)
    cap = 2000
    r = encode(img, replace(c, rate=replace(c.rate, max_bytes=cap)))
    assert r.stats.model == "composite" and r.stats.strips == 2 and r.stats.bytes <= cap


def test_the_bars_follow_the_slowest_strip_and_keep_what_the_faster_did_ahead():
    shown, progress = recorder()
    bars = split._Bars(progress, [(100, 3), (80, 3)])
    bars.tick(0, "fit", 60)
    bars.tick(1, "fit", 80)
    bars.tick(1, "rounding", 2)  # strip 1 rounds while strip 0 still fits: no rounding bar yet
    assert shown == [["fit", 180, 140]]
    bars.tick(0, "fit", 40)
    assert shown == [["fit", 180, 180], ["rounding", 6, 2]]  # what strip 1 did ahead is on the new bar
    bars.tick(0, "fit", 30)  # a retried fit's steps past the strip's total are not counted
    assert shown[0][2] == 180
    bars.finished(1)  # strip 1 done: its last sweep was not reported, the strip is
    bars.tick(0, "rounding", 3)
    assert shown == [["fit", 180, 180], ["rounding", 6, 6], ["strips", 2, 1]]
    bars.finished(0)
    assert shown[-1] == ["strips", 2, 2]
    # no rounding (sweeps 0): no bar for it; no progress: nothing shown, nothing fails
    shown.clear()
    bars = split._Bars(progress, [(10, 0), (10, 0)])
    bars.tick(0, "fit", 10)
    bars.tick(1, "fit", 10)
    assert shown == [["fit", 20, 20], ["strips", 2, 0]]
    quiet = split._Bars(None, [(10, 1)])
    quiet.tick(0, "fit", 10)
    quiet.finished(0)


def test_a_childs_progress_lines_are_read_by_phase():
    import os
    import warnings

    read_end, write_end = os.pipe()
    make = split._ticks(write_end)
    fit, rounding, choices = make("fit", 5), make("rounding", 3, "sweep"), make("loop filter", 1)
    fit(2, 0.1)
    rounding(1, float("nan"))
    choices(1, float("nan"))  # a phase the parent shows no bar for
    fit(3, 0.1)
    with warnings.catch_warnings():  # the child leaves its end to the process's exit; here it closes now
        warnings.simplefilter("ignore", ResourceWarning)
        del make, fit, rounding, choices  # the last references to the pipe's write end
    got: list[tuple[str, int]] = []
    split._read_ticks(read_end, lambda phase, n: got.append((phase, n)))
    assert got == [("fit", 2), ("rounding", 1), ("fit", 3)]


def test_more_strips_than_run_at_once_show_one_bar_of_the_whole_that_never_stands_still_or_goes_back():
    shown, progress = recorder()  # (every update a step forward)
    bars = split._Bars(progress, [(100, 3)] * 4, together=False)  # four strips, two at a time
    bars.tick(0, "fit", 100)
    assert shown == [["strips", 100, 15]]  # a strip's fit: 0.6 of its quarter of the whole
    bars.tick(1, "fit", 100)
    assert shown == [["strips", 100, 30]]
    for first in (0, 1):
        bars.tick(first, "rounding", 3)
        bars.finished(first)
    assert shown[0][2] == 50  # two of four strips done
    for later in (2, 3):  # the later strips' fit moves the same bar on
        bars.tick(later, "fit", 50)
    assert shown[0][2] == 65  # half of two later strips' fits: 2 x 0.3 / 4 more
    for later in (2, 3):
        bars.finished(later)
    assert shown == [["strips", 100, 100]]
