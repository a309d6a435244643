"""The rate–distortion harness: aggregation arithmetic, outputs, caching, overrides."""
import csv
import hashlib
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pranc_codec.cli import main
from pranc_codec.config import BasisKind, CodecConfig, apply_overrides
from pranc_codec.evaluation.calibration import (REFERENCE_SECONDS, ReferenceWorkload, framed, reference_seconds,
                                                speed_of)
from pranc_codec.evaluation.codecs import Codec, PrancCodec
from pranc_codec.evaluation.report import bd_table, points_table
from pranc_codec.evaluation.runner import aggregate, psnr_of_mse

from .conftest import FAST, smooth_image


class _Named(Codec):
    def __init__(self, name):
        self.name, self.description, self.points = name, "d", []


def _rec(image, point, bpp, mse, ssim=0.9):
    return {"image": image, "codec": "c", "point": point, "bpp": bpp, "mse": mse,
            "psnr": psnr_of_mse(mse), "ms_ssim": ssim, "encode_s": 1.0, "decode_s": 0.5}


def test_aggregate_averages_psnr_both_ways_and_drops_incomplete_points():
    recs = [_rec("a", 10, 0.2, 10.0), _rec("b", 10, 0.4, 40.0), _rec("a", 20, 0.5, 5.0)]  # point 20: one image
    c = aggregate(recs, _Named("c"), n_images=2)
    r = c["results"]
    assert set(c) >= {"name", "description", "results"} and c["name"] == "c"
    assert r["point"] == [10] and r["bpp"] == [pytest.approx(0.3)]
    mean_psnr = (10 * math.log10(255**2 / 10) + 10 * math.log10(255**2 / 40)) / 2
    assert r["psnr-rgb"] == [pytest.approx(mean_psnr)]
    assert r["psnr-rgb-mse"] == [pytest.approx(10 * math.log10(255**2 / 25.0))]
    assert r["psnr-rgb-mse"][0] < r["psnr-rgb"][0]  # Jensen: mean of logs >= log of mean
    assert r["ms-ssim-rgb"] == [pytest.approx(0.9)] and r["encoding_time"] == [1.0]


def test_times_at_the_reference_speed_scale_each_task_by_its_own_speed():
    """A task run at half the reference machine's speed counts twice as fast; a point with a task cached before
    speeds were measured has no time at the reference speed (not a mean over the others)."""
    recs = [{**_rec("a", 1, 0.1, 50.0), "encode_s": 40.0, "speed": 1.0},
            {**_rec("b", 1, 0.1, 50.0), "encode_s": 60.0, "speed": 0.5},
            {**_rec("a", 2, 0.2, 20.0), "encode_s": 30.0, "speed": 0.8}, _rec("b", 2, 0.2, 20.0)]
    r = aggregate(recs, _Named("c"), n_images=2)["results"]
    assert r["max_encoding_time"][0] == 60.0 and r["encoding_time"][0] == 50.0
    assert r["encoding_time_at_reference"] == [35.0, None] and r["max_encoding_time_at_reference"] == [40.0, None]
    assert r["speed"] == [[0.5, 1.0], None]
    table = points_table(aggregate(recs, _Named("c"), n_images=2))
    assert "| 35.00 / 40.00 | 0.50–1.00 |" in table and table.rstrip().endswith("| – | – |")


def test_the_reference_workload_frames_a_task_and_leaves_the_caller_s_thread_setting():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the workload runs on one; the harness's worker keeps its own setting
    seen = []
    try:
        tiny = ReferenceWorkload(steps=3, runs=3, warmup=1, pixels=256, width=8, grid=(8, 12))
        assert 0 < reference_seconds(tiny) < 10 and torch.get_num_threads() == 2
        out, ref_s = framed(lambda: seen.append(torch.get_num_threads()) or "done", lambda: reference_seconds(tiny))
        assert out == "done" and seen == [2] and 0 < ref_s < 10  # the task runs with the caller's setting
        assert speed_of(REFERENCE_SECONDS / 2) == pytest.approx(2.0)  # twice as fast as the reference
    finally:
        torch.set_num_threads(before)


def test_exactly_decoded_images_have_no_mean_psnr_and_are_counted():
    """A lossless file (format version 9) has an infinite PSNR: the point keeps its rate, its PSNR of the mean
    MSE and a count of exact images, and the BD-rate is taken over the other points."""
    recs = [_rec("a", 1, 0.1, 50.0), _rec("b", 1, 0.1, 60.0),
            _rec("a", 2, 0.2, 20.0), _rec("b", 2, 0.2, 0.0, 1.0),  # b exact from 0.2 bpp
            _rec("a", 3, 0.4, 8.0), _rec("b", 3, 0.2, 0.0, 1.0),
            _rec("a", 4, 0.5, 0.0, 1.0), _rec("b", 4, 0.2, 0.0, 1.0)]
    c = aggregate(recs, _Named("c"), n_images=2)
    r = c["results"]
    assert r["psnr-rgb"][0] == pytest.approx((psnr_of_mse(50.0) + psnr_of_mse(60.0)) / 2)
    assert r["psnr-rgb"][1:] == [None, None, None] and r["exact"] == [0, 1, 1, 2]
    assert r["psnr-rgb-mse"][1] == pytest.approx(psnr_of_mse(10.0)) and r["psnr-rgb-mse"][3] is None
    json.dumps(c, allow_nan=False)
    table = points_table(c)
    assert "| 2 | 0.2000 | – | 38.13 (1 exact) |" in table and "| 4 | 0.3500 | – | – (2 exact) |" in table
    ref = {"name": "ref", "results": {"bpp": [0.1, 0.2, 0.4], "psnr-rgb": [25.0, 30.0, 35.0]}}
    assert "| c | –% |" in bd_table([c], ref)  # one finite point: no BD-rate, and no error
    c["results"]["psnr-rgb"][0] = None
    assert "| c | –% |" in bd_table([c], ref)  # none (every point has an exact image)


def test_apply_overrides_types_and_errors():
    cfg = apply_overrides(CodecConfig(), ["fit.lr=0.1", "basis.kind=ternary", "basis.offset=false",
                                          "rate.bits_per_coef=9", "width=40", "fit.steps=7"])
    assert cfg.fit.lr == 0.1 and cfg.basis.kind == BasisKind.TERNARY and cfg.basis.offset is False
    assert cfg.rate.bits_per_coef == 9.0 and cfg.width == 40 and cfg.fit.steps == 7
    # a tuple setting takes comma-separated items of its default's type
    assert apply_overrides(CodecConfig(), ["grid.mlp_bits=7,8"]).grid.mlp_bits == (7, 8)
    for bad in ["fit.nope=1", "fit.lr=abc", "basis.kind=PURPLE", "lr", "a.b.c=1", "grid.mlp_bits=7,x"]:
        with pytest.raises(ValueError):
            apply_overrides(CodecConfig(), [bad])


def test_apply_overrides_optional_floats_and_non_fields():
    """An optional float field takes a float (or none); a property or an unknown top-level name is an unknown
    setting (ValueError, which the CLI reports in one line), not a TypeError from the dataclass."""
    assert apply_overrides(CodecConfig(), ["grid.scale_lr=0.1"]).grid.scale_lr == 0.1
    assert apply_overrides(CodecConfig(), ["grid.scale_lr=none"]).grid.scale_lr is None
    for bad in ["grid.effective_scale_lr=0.1", "nothing=1", "width=1.5"]:
        with pytest.raises(ValueError):
            apply_overrides(CodecConfig(), [bad])


@pytest.fixture
def tiny_dataset(tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    lines = []
    for i in range(2):
        p = d / f"img{i}.png"
        Image.fromarray(smooth_image(40, 56, 3, seed=i)).save(p)
        lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}")
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "jpeg.json").write_text(json.dumps(
        {"name": "JPEG", "description": "", "results": {"bpp": [0.5, 1, 2, 4], "psnr": [25, 28, 31, 34]}}))
    return d, anchors


def _eval(tmp_path, dataset, anchors, *extra):
    args = ["eval", "--dataset", str(dataset), "--anchors", str(anchors), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "-q", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_eval_pillow_codecs_outputs_and_cache(tmp_path, tiny_dataset):
    data, anchors = tiny_dataset
    r = _eval(tmp_path, data, anchors, "--codecs", "jpeg,webp", "--qualities", "10,50,90", "--json")
    assert r.exit_code == 0, r.output
    curves = {c["name"]: c for c in json.loads(r.stdout)}
    out = tmp_path / "out"
    for name in ("jpeg", "webp"):
        saved = json.loads((out / f"{name}.json").read_text())
        assert saved == curves[name]
        res = saved["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"} <= set(res)
        assert len(res["bpp"]) == 3 and res["bpp"] == sorted(res["bpp"])
        assert res["psnr-rgb"] == sorted(res["psnr-rgb"])  # higher quality, higher PSNR here
        assert res["ms-ssim-rgb"] == [None] * 3  # 40x56 is too small for five MS-SSIM scales
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 2 * 3 * 2
    # per-image PSNR is that of the real codec output at the recorded size
    row = next(x for x in rows if x["codec"] == "jpeg" and x["point"] == "50" and x["image"] == "img0")
    src = smooth_image(40, 56, 3, seed=0)
    import io
    buf = io.BytesIO()
    Image.fromarray(src).save(buf, "JPEG", quality=50)
    dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
    assert int(row["bytes"]) == len(buf.getvalue())
    assert float(row["psnr"]) == pytest.approx(10 * math.log10(255**2 / np.mean((dec - src) ** 2)))
    assert (out / "rd.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "BD-rate" in summary and "| webp |" in summary and "JPEG (published)" in summary
    # every result is cached: a second run measures nothing
    r2 = CliRunner().invoke(main, ["eval", "--dataset", str(data), "--anchors", str(anchors), "--out",
                                   str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                                   "--codecs", "jpeg,webp", "--qualities", "10,50,90"], catch_exceptions=False)
    assert "12 cached, 0 to run" in r2.output
    # --cached-only reports from the cache and measures nothing new (quality 30 is not cached)
    r3 = CliRunner().invoke(main, ["eval", "--dataset", str(data), "--anchors", str(anchors), "--out",
                                   str(tmp_path / "out3"), "--cache", str(tmp_path / "cache"), "--codecs", "jpeg",
                                   "--qualities", "10,30,50", "--cached-only", "--json"], catch_exceptions=False)
    assert "2 tasks not run" in r3.output
    (jp,) = json.loads(r3.stdout.strip().splitlines()[-1])
    assert jp["results"]["point"] == [10, 50]
    # and draws no curve for a neural codec none of whose points are cached (was a KeyError in the figure's axes)
    r4 = CliRunner().invoke(main, ["eval", "--dataset", str(data), "--anchors", str(anchors), "--out",
                                   str(tmp_path / "out4"), "--cache", str(tmp_path / "cache"), "--codecs", "pranc,jpeg",
                                   "--bpp", "0.5", "--qualities", "10,50", "--cached-only", "--json"],
                         catch_exceptions=False)
    assert r4.exit_code == 0 and "2 tasks not run" in r4.output
    pranc, jp = json.loads(r4.stdout.strip().splitlines()[-1])
    assert pranc["results"] == {} and jp["results"]["point"] == [10, 50]
    assert (tmp_path / "out4" / "rd.png").exists()


def test_eval_rejects_bad_dataset_and_codec(tmp_path, tiny_dataset):
    data, anchors = tiny_dataset
    assert _eval(tmp_path, tmp_path / "nope", anchors).exit_code == 2
    assert _eval(tmp_path, data, anchors, "--codecs", "gif").exit_code == 2
    (data / "img0.png").write_bytes(b"tampered")
    r = _eval(tmp_path, data, anchors, "--codecs", "jpeg")
    assert r.exit_code == 2 and "SHA256SUMS" in r.output


def test_neural_codec_in_worker_process(tmp_path, tiny_dataset):
    """The pranc codec runs through the spawn pool and reports size, quality and memory."""
    data, anchors = tiny_dataset
    from pranc_codec.evaluation import runner

    codec = PrancCodec("pranc", "fast test config", [2.0], FAST)
    items = [runner.ImageItem(p, "x", None) for p in runner.dataset(data)][:1]
    recs = runner.run(items, [codec], {"pranc": [2.0]}, tmp_path / "cache", jobs=1, threads=1, progress=False)
    (rec,) = recs
    assert rec["bytes"] > 0 and rec["bpp"] == pytest.approx(8 * rec["bytes"] / (40 * 56))
    assert rec["psnr"] == pytest.approx(rec["encoder_psnr"])  # decoder output = encoder's figure
    assert rec["peak_rss_mb"] > 50
    # the machine's speed around the task (calibration.py), with which the summary rescales its times
    assert 0 < rec["ref_s"] < 60 and rec["speed"] == pytest.approx(REFERENCE_SECONDS / rec["ref_s"])
    assert rec["device"] == "cpu"


def test_the_reference_workload_adds_nothing_to_a_task_s_peak_memory():
    """The workload runs in the harness's worker before the task, whose peak memory the harness reports: it must
    not load what the encoder does not (torch.optim's Adam imports torch._dynamo: +180 MB, session 58)."""
    import subprocess
    import sys

    code = ("import sys, torch; from pranc_codec.evaluation.calibration import ReferenceWorkload, reference_seconds; "
            "before = set(sys.modules); reference_seconds(ReferenceWorkload(steps=2, runs=1, warmup=1, pixels=64, "
            "grid=(4, 4))); print(sorted(m for m in set(sys.modules) - before if not m.startswith('torch._C')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch._dynamo" not in out and "torch.optim" not in out, out


def test_a_task_on_the_gpu_gets_no_cpu_speed(tmp_path, tiny_dataset, monkeypatch):
    """The workload times the CPU: a neural task that ran on CUDA keeps its raw times only."""
    from pranc_codec.evaluation import runner
    from pranc_codec.evaluation.codecs import Trial

    class _Heavy(Codec):
        name, description, points, heavy = "h", "d", [1.0], True

        def __init__(self, device):
            self.device = device

        def run(self, image, point, threads=0):
            return Trial(10, image.copy(), 2.0, 0.1, {"device": self.device})

        def runs_on_cpu(self):
            return self.device == "cpu"

    monkeypatch.setattr(runner, "framed", lambda task: (task(), REFERENCE_SECONDS / 2))
    item = runner.ImageItem(runner.dataset(tiny_dataset[0])[0], "x")
    cpu, gpu = (runner._measure(item, _Heavy(d), 1.0, 1) for d in ("cpu", "cuda:0"))
    assert cpu["speed"] == pytest.approx(2.0) and cpu["ref_s"] == pytest.approx(REFERENCE_SECONDS / 2)
    assert "speed" not in gpu and "ref_s" not in gpu and gpu["encode_s"] == 2.0


def test_eval_tune_sets_pranc_fit_and_keeps_its_cache_apart():
    from pranc_codec.evaluation.codecs import registry

    psnr, balanced = registry(tune="psnr")["pranc"], registry()["pranc"]
    assert psnr.config.grid.structure_mix == 0.0 and balanced.config.grid.structure_mix > 0
    assert "psnr tune" in psnr.description and "balanced tune" in balanced.description
    assert psnr.identity() != balanced.identity()  # part of the cache key
    assert registry(tune="psnr")["direct"].identity() == registry()["direct"].identity()  # not a grid codec


def test_figure_axes_cover_the_neural_codecs_measured_rates():
    """The figure's rate axis reaches past the highest rate a neural codec was run at (a run at 2 and 4 bpp is
    drawn, not cut off at Kodak's 1.25), whatever rates JPEG's sweep or the published curves reach; the PSNR axis
    widens to the highest point drawn."""
    from pranc_codec.evaluation.report import MIN_AXIS_BPP, PSNR_AXIS, axis_limits

    def curve(bpp, psnr):
        return {"results": {"bpp": bpp, "psnr-rgb": psnr}}

    jpeg = curve([0.2, 1.0, 3.4], [24.0, 32.9, 40.6])
    low = curve([0.125, 0.25, 0.5, 1.0], [26.8, 28.8, 31.3, 34.8])
    assert axis_limits([low], [low, jpeg]) == (MIN_AXIS_BPP, PSNR_AXIS[1])
    assert axis_limits([], [jpeg]) == (MIN_AXIS_BPP, PSNR_AXIS[1])
    high = curve([2.05, 3.96], [39.2, 43.3])
    max_bpp, top = axis_limits([high], [high, jpeg])
    assert 3.96 < max_bpp < 4.5 and top == 45.0
    empty = {"results": {}}  # a --cached-only report of points the cache does not hold (was a KeyError)
    assert axis_limits([empty, high], [empty, high, jpeg]) == (max_bpp, top)


def test_a_picture_with_transparency_is_measured_where_seen(tmp_path):
    """WebP keeps the alpha exactly, JPEG cannot (its decode is opaque); PSNR is the colour's over the pixels whose
    alpha is not 0, whatever is under the others; the picture's results are cached apart from its colour alone."""
    from pranc_codec.evaluation import runner
    from pranc_codec.evaluation.codecs import registry

    from .test_alpha import cutout

    img = cutout(64, 80)
    Image.fromarray(img).save(tmp_path / "a.png")
    item = runner.ImageItem(tmp_path / "a.png", "d", None, runner.has_alpha(tmp_path / "a.png"))
    assert item.alpha
    Image.fromarray(img[:, :, :3]).save(tmp_path / "rgb.png")
    assert not runner.has_alpha(tmp_path / "rgb.png")
    codecs = registry()
    seen = img[:, :, 3] > 0
    for name, alpha_db in (("webp", None), ("jpeg", "finite")):
        rec = runner._measure(item, codecs[name], 50, 1)
        out = codecs[name].run(img, 50).decoded
        d = out[seen][:, :3].astype(float) - img[seen][:, :3]
        assert rec["psnr"] == pytest.approx(10 * math.log10(255**2 / np.mean(d * d)))
        assert (rec["alpha_psnr"] is None) == (alpha_db is None)  # None: exact
    opaque = runner.ImageItem(tmp_path / "a.png", "d", None)
    assert runner.task_key(item, codecs["webp"], 50) != runner.task_key(opaque, codecs["webp"], 50)
