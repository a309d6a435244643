"""Run codecs over an image set, cache every (image, codec, point), aggregate curves.

Each finished task is written to ``cache_dir`` at once (atomically), keyed by a
hash of the image bytes, crop, codec identity and rate point, so an interrupted
run resumes where it stopped and a code or setting change never reuses stale
results.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..batch import available_cores
from ..image_io import atomic_write, read_image
from ..metrics import judged, psnr, psnr_of_mse, reportable
from .calibration import framed, speed_of
from .codecs import Codec
from .provenance import file_digest


@dataclass(frozen=True)
class ImageItem:
    """One evaluation image: a file and an optional crop box (x, y, w, h)."""

    path: Path
    digest: str
    crop: tuple[int, int, int, int] | None = None
    # the file has an alpha channel (:func:`has_alpha`): it is coded with it and measured where seen, so its
    # results are cached apart from those of the same file's colour alone (the harness before session 39)
    alpha: bool = False

    @property
    def name(self) -> str:
        stem = self.path.stem
        if self.crop is None:
            return stem
        x, y, w, h = self.crop
        return f"{stem}[{w}x{h}+{x}+{y}]"

    def load(self) -> np.ndarray:
        """uint8 (H, W, C): C in {1, 3}, or {2, 4} with the alpha last where the picture has transparency."""
        img = read_image(self.path, keep_alpha=True)[0]
        if self.crop is not None:
            x, y, w, h = self.crop
            img = np.ascontiguousarray(img[y: y + h, x: x + w])
        return img


def has_alpha(path: Path) -> bool:
    """Whether the image file has an alpha channel (its mode, or a palette's transparency), from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def dataset(folder: Path, check_sums: bool = True) -> list[Path]:
    """Image files in ``folder`` (sorted), verified against its SHA256SUMS when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".bmp"))
    sums = folder / "SHA256SUMS"
    if check_sums and sums.exists():
        expected = {}
        for line in sums.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                expected[name.lstrip("*").strip()] = digest
        for p in files:
            if p.name in expected and file_digest(p) != expected[p.name]:
                raise ValueError(f"{p} does not match {sums}")
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def task_key(item: ImageItem, codec: Codec, point: float) -> str:
    fields = {"image": item.digest, "crop": item.crop, "codec": codec.name, "identity": codec.identity(),
              "point": point, **({"alpha": True} if item.alpha else {})}  # an opaque picture's key is as it was
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _measure(item: ImageItem, codec: Codec, point: float, threads: int) -> dict[str, Any]:
    """Run one task and compute its metrics (in whatever process calls it)."""
    img = item.load()
    # a heavy task's times depend on the hour: the machine's speed just before and after it (calibration.py; the
    # workload times the CPU, so not around a task on CUDA)
    if codec.heavy and codec.runs_on_cpu():
        trial, ref_s = framed(lambda: codec.run(img, point, threads))
    else:
        trial, ref_s = codec.run(img, point, threads), None
    h, w = img.shape[:2]
    extra = {}
    if img.shape[2] in (2, 4):  # with transparency: the colour where it is seen, as the encoder judges it
        m, ms = judged(img[:, :, :-1], trial.decoded[:, :, :-1], img[:, :, -1] > 0)
        extra["alpha_psnr"] = reportable(psnr(img[:, :, -1:], trial.decoded[:, :, -1:]))
    else:
        m, ms = judged(img, trial.decoded)
    rec = {
        "image": item.name, "codec": codec.name, "point": point,
        "width": w, "height": h, "bytes": trial.nbytes, "bpp": 8.0 * trial.nbytes / (h * w),
        "mse": m, "psnr": psnr_of_mse(m), "ms_ssim": ms,
        "encode_s": trial.encode_s, "decode_s": trial.decode_s, **extra, **trial.extra,
    }
    if ref_s is not None:
        rec.update(ref_s=ref_s, speed=speed_of(ref_s))
    if codec.heavy:
        # this worker ran only this task, so its peak RSS is the task's (MB)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rec["peak_rss_mb"] = rss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return rec


def _worker(args: tuple[ImageItem, Codec, float, int, int]) -> dict[str, Any]:
    """One task in a worker process: torch on ``args[4]`` threads (the metrics'), the codec given ``args[3]``."""
    import torch

    torch.set_num_threads(args[4])
    return _measure(*args[:4])


def run(items: list[ImageItem], codecs: list[Codec], points: dict[str, list[float]], cache_dir: Path,
        jobs: int = 1, threads: int = 0, progress: bool = True,
        log: Callable[[str], None] = lambda s: None, cached_only: bool = False) -> list[dict[str, Any]]:
    """Measure every (image, codec, point); returns one record per task (cached ones included).

    With ``cached_only`` nothing is measured: the records are those in the cache.

    Heavy codecs run in ``jobs`` worker processes (one task each) with
    ``threads`` torch threads apiece (0: cores // jobs for the metrics, and the encoder's own default for its fit,
    one thread: ``FitConfig.threads``).
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    process_threads = threads or max(1, available_cores() // max(1, jobs))
    records: list[dict[str, Any]] = []
    light, heavy = [], []
    for codec in codecs:
        for point in points[codec.name]:
            for item in items:
                path = cache_dir / codec.name / f"{task_key(item, codec, point)}.json"
                if path.exists():
                    records.append(json.loads(path.read_text()))
                else:
                    (heavy if codec.heavy else light).append((item, codec, point, path))
    log(f"{len(records)} cached, {len(light) + len(heavy)} to run ({len(heavy)} neural)")
    if cached_only:
        if light or heavy:
            log(f"--cached-only: {len(light) + len(heavy)} tasks not run; incomplete rate points are left out")
        return records
    bar = tqdm(total=len(light) + len(heavy), disable=not progress, unit="task", file=sys.stderr,
               dynamic_ncols=True)

    def store(rec: dict[str, Any], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(rec, sort_keys=True).encode(), force=True)
        records.append(rec)
        bar.set_postfix_str(f"{rec['codec']} {rec['image']} {rec['bpp']:.3f}bpp {rec['psnr']:.2f}dB")
        bar.update(1)

    for item, codec, point, path in light:
        store(_measure(item, codec, point, threads), path)
    if heavy:
        ctx = mp.get_context("spawn")  # fresh interpreter per task: clean peak-RSS figures
        with ctx.Pool(processes=max(1, jobs), maxtasksperchild=1) as pool:
            args = [(item, codec, point, threads, process_threads) for item, codec, point, _ in heavy]
            for (_, _, _, path), rec in zip(heavy, pool.imap(_worker, args)):
                store(rec, path)
    bar.close()
    return records


def aggregate(records: Iterable[dict[str, Any]], codec: Codec, n_images: int) -> dict[str, Any]:
    """Average per rate point over images, in CompressAI's results layout.

    Only points measured on all ``n_images`` images are kept. ``encoding_time_at_reference`` (mean, and its
    ``max_``) is the encode time at the reference machine's speed, ``speed`` the [lowest, highest] speed the
    point's tasks ran at (calibration.py); None where a task has no speed. ``psnr-rgb`` is the
    mean of per-image PSNR (CompressAI's convention); ``psnr-rgb-mse`` is the
    PSNR of the mean MSE. ``exact`` counts the images decoded exactly (pranc's lossless files, format
    version 9): their PSNR is infinite, so a point with any has no mean PSNR (None, which the BD-rates and the
    figure leave out), and one with all has no PSNR of the mean MSE either.
    """
    by_point: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r["codec"] == codec.name:
            by_point.setdefault(r["point"], []).append(r)
    rows = []
    for point, rs in by_point.items():
        if len(rs) != n_images:
            continue
        ssim = [r["ms_ssim"] for r in rs]
        # the times at the reference machine's speed, where every task has its speed (not records cached before)
        at_ref = [r["encode_s"] * r["speed"] for r in rs] if all(r.get("speed") for r in rs) else None
        rows.append({
            "point": point,
            "bpp": float(np.mean([r["bpp"] for r in rs])),
            "psnr-rgb": reportable(float(np.mean([r["psnr"] for r in rs]))),
            "psnr-rgb-mse": reportable(psnr_of_mse(float(np.mean([r["mse"] for r in rs])))),
            "exact": sum(r["mse"] == 0 for r in rs),
            "ms-ssim-rgb": float(np.mean(ssim)) if all(s is not None for s in ssim) else None,
            "encoding_time": float(np.mean([r["encode_s"] for r in rs])),
            "decoding_time": float(np.mean([r["decode_s"] for r in rs])),
            "max_encoding_time": float(np.max([r["encode_s"] for r in rs])),
            "encoding_time_at_reference": float(np.mean(at_ref)) if at_ref else None,
            "max_encoding_time_at_reference": float(np.max(at_ref)) if at_ref else None,
            "speed": [float(min(r["speed"] for r in rs)), float(max(r["speed"] for r in rs))] if at_ref else None,
            "peak_rss_mb": max((r.get("peak_rss_mb") or 0.0) for r in rs) or None,
        })
    rows.sort(key=lambda r: r["bpp"])
    results = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
    return {"name": codec.name, "description": codec.description, "images": n_images, "results": results}


def load_curves(folder: Path) -> list[dict[str, Any]]:
    """Published curves (CompressAI layout) from ``folder``; ``psnr`` is read as ``psnr-rgb``."""
    out = []
    for p in sorted(Path(folder).glob("*.json")):
        d = json.loads(p.read_text())
        res = d.get("results", {})
        if "psnr-rgb" not in res and "psnr" in res:
            res["psnr-rgb"] = res["psnr"]
        if "bpp" in res and "psnr-rgb" in res:
            d["file"] = p.name
            out.append(d)
    return out
