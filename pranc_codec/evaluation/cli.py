"""``pranc eval``: the Kodak rate–distortion harness (also ``bin/rd-eval``)."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import click

from ..config import TUNES

REPO = Path(__file__).resolve().parents[2]
QUICK_IMAGES = ["kodim03", "kodim08", "kodim15", "kodim23"]
QUICK_CROP = (384, 256)  # centre crop: a quarter of a Kodak image
QUICK_BPP = [0.15, 0.3, 0.6]
QUICK_QUALITIES = [1, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]
QUICK_CODECS = "pranc,direct,jpeg,webp"
FULL_CODECS = "pranc,direct,jpeg,jpeg-444,webp,avif"


def _default_path(*parts: str) -> Path | None:
    """``../shared/...`` relative to the working directory, else to the repository."""
    for base in (Path.cwd(), REPO):
        p = base.parent.joinpath("shared", *parts)
        if p.is_dir():
            return p
    return None


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


@click.command("eval")
@click.option("--dataset", type=click.Path(file_okay=False), default=None,
              help="Image folder (default: ../shared/data/kodak, or $PRANC_DATASET).")
@click.option("--anchors", type=click.Path(file_okay=False), default=None,
              help="Published curves to draw (default: ../shared/data/anchors/kodak).")
@click.option("--codecs", default=None, help=f"Comma-separated codecs (default: {FULL_CODECS}).")
@click.option("--bpp", default=None, help="Target bpp list for the neural codecs (default 0.125,0.25,0.5,1).")
@click.option("--qualities", default=None, help="Quality list for the Pillow codecs (default 1..4, 5..95 step 5).")
@click.option("--images", default=None, help="Comma-separated image stems to use (default: all).")
@click.option("--crop", default=None, help="Centre crop WxH of every image.")
@click.option("--quick", is_flag=True, help="4 centre crops, 3 rates, fewer codecs: ~10 min on 2 cores.")
@click.option("--preset", type=click.Choice(["fast", "default", "slow"]), default="default", show_default=True)
@click.option("--tune", type=click.Choice(list(TUNES)), default="balanced", show_default=True,
              help="What pranc's fit aims at (as pranc encode --tune).")
@click.option("--set", "overrides", multiple=True, help="Neural-codec setting, e.g. --set fit.lr=0.1 (repeatable).")
@click.option("--name", default=None, help="Rename the 'pranc' codec (for ablations; keeps caches apart).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Parallel neural encodes.")
@click.option("--threads", type=click.IntRange(0, 256), default=0,
              help="Torch threads per job (0: the encoder's default, one thread a fit; cores / jobs for the rest).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Results folder (default eval/results, or eval/results-quick with --quick).")
@click.option("--cache", type=click.Path(file_okay=False), default=None, help="Cache folder (default eval/cache).")
@click.option("--method", type=click.Choice(["pchip", "cubic"]), default="pchip", show_default=True,
              help="Bjøntegaard interpolation.")
@click.option("--cached-only", is_flag=True, help="Measure nothing; report what the cache holds.")
@click.option("--compare", "compare", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A curve measured in an earlier run (<codec>.json) to draw and tabulate too (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the aggregated curves as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_command(dataset, anchors, codecs, bpp, qualities, images, crop, quick, preset, tune, overrides, name, jobs,
                 threads, out, cache, method, cached_only, compare, as_json, quiet) -> None:
    """Measure rate–distortion of pranc and reference codecs; write curves, tables and a figure."""
    from .calibration import REFERENCE_MACHINE
    from .codecs import registry
    from .report import axis_limits, bd_table, plot, points_table
    from .runner import ImageItem, aggregate, dataset as list_images, has_alpha, load_curves, run
    from .provenance import file_digest

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    data_dir = Path(dataset) if dataset else (Path(os.environ["PRANC_DATASET"]) if "PRANC_DATASET" in os.environ
                                               else _default_path("data", "kodak"))
    if data_dir is None:
        raise click.UsageError("no dataset: pass --dataset (../shared/data/kodak was not found)")
    anchor_dir = Path(anchors) if anchors else _default_path("data", "anchors", "kodak")
    try:
        files = list_images(data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    wanted = images.split(",") if images else (QUICK_IMAGES if quick else None)
    if wanted:
        missing = set(wanted) - {p.stem for p in files}
        if missing:
            raise click.UsageError(f"images not in {data_dir}: {', '.join(sorted(missing))}")
        files = [p for p in files if p.stem in wanted]
    crop_wh = QUICK_CROP if quick and not crop else None
    if crop:
        try:
            crop_wh = tuple(int(v) for v in crop.lower().split("x"))  # type: ignore[assignment]
        except ValueError:
            raise click.BadParameter(f"--crop {crop!r} is not WxH") from None
    items = []
    for p in files:
        box = None
        if crop_wh:
            from ..image_io import read_image

            h, w = read_image(p)[0].shape[:2]
            cw, ch = min(crop_wh[0], w), min(crop_wh[1], h)
            box = ((w - cw) // 2, (h - ch) // 2, cw, ch)
        items.append(ImageItem(p, file_digest(p), box, has_alpha(p)))

    try:
        reg = registry(_floats(bpp) or (QUICK_BPP if quick else None),
                       _floats(qualities) or (QUICK_QUALITIES if quick else None), list(overrides), preset, tune)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    names = (codecs or (QUICK_CODECS if quick else FULL_CODECS)).split(",")
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise click.UsageError(f"unknown codecs {', '.join(unknown)}; known: {', '.join(reg)}")
    chosen = [reg[n] for n in names]
    if name:
        for c in chosen:
            if c.name == "pranc":
                c.name = name
                c.description += " " + " ".join(overrides)
    points = {c.name: c.points for c in chosen}

    out_dir = Path(out) if out else REPO / "eval" / ("results-quick" if quick else "results")
    cache_dir = Path(cache) if cache else REPO / "eval" / "cache"
    log = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    log(f"{len(items)} images from {data_dir}; codecs {', '.join(c.name for c in chosen)}")
    records = run(items, chosen, points, cache_dir, jobs=jobs, threads=threads, progress=not quiet, log=log,
                  cached_only=cached_only)

    out_dir.mkdir(parents=True, exist_ok=True)
    curves = [aggregate(records, c, len(items)) for c in chosen]
    for c in curves:
        (out_dir / f"{c['name']}.json").write_text(json.dumps(c, indent=1))
    _write_per_image(out_dir / "per_image.csv", [r for r in records if r["codec"] in points and r["point"] in points[r["codec"]]])
    published = load_curves(anchor_dir) if anchor_dir and anchor_dir.is_dir() else []
    earlier = []
    for path in compare:
        c = json.loads(Path(path).read_text())
        c["name"] = f"{c['name']} [{Path(path).parent.name}]"  # e.g. "pranc [results-siren]"
        c["earlier"] = str(path)
        earlier.append(c)
    neural = [c for c, codec in zip(curves, chosen) if codec.heavy] + earlier
    max_bpp, psnr_top = axis_limits(neural, curves + earlier + published)
    plot(curves + earlier, published, out_dir / "rd.png", max_bpp=max_bpp, psnr_top=psnr_top,
         title=f"{data_dir.name}: {len(items)} images" + (f", {crop_wh[0]}x{crop_wh[1]} crops" if crop_wh else ""))
    md = [f"# Rate–distortion: {len(items)} images from `{data_dir.name}`"
          + (f" ({crop_wh[0]}x{crop_wh[1]} centre crops)" if crop_wh else ""), "",
          f"- command: `{_command()}`", f"- date: {started}", f"- machine: {_machine()}",
          "- PSNR: mean of per-image RGB PSNR (CompressAI's convention); 'of mean MSE' also given.",
          f"- Bjøntegaard: {method} interpolation over the overlapping range.",
          "- Times: as measured here, and for the neural codecs on the CPU also at the reference speed"
          f" ({REFERENCE_MACHINE}): each task's time x the machine's speed around it, from a fixed workload timed"
          " just before and after the task (`pranc_codec/evaluation/calibration.py`).", ""]
    ref = next((c for c in curves if c["name"] == "jpeg" and c["results"].get("bpp")), None)
    if ref is None:
        ref = next((c for c in published if c["file"] == "jpeg.json"), None)
    if ref is not None:
        md += ["## BD-rate against " + ref["name"] + ("" if ref.get("file") else " (measured here)"), "",
               bd_table([c for c in curves if c is not ref] + earlier + published, ref, method), ""]
    main_curve = next((c for c in curves if c["name"] == "pranc" and c["results"].get("bpp")), None)
    for c in earlier if main_curve is not None else []:
        md += [f"## BD-rate of pranc against `{c['earlier']}`", "", c["description"], "",
               bd_table([main_curve], c, method), ""]
    pub_jpeg = next((c for c in published if c["file"] == "jpeg.json"), None)
    check = _jpeg_check(curves, pub_jpeg) if pub_jpeg and not crop_wh and len(items) == 24 else None
    if check:
        md += ["## Check: measured JPEG against CompressAI's published JPEG curve", "", check, ""]
    md += ["## Points", ""] + [points_table(c) + "\n" for c in curves if c["results"].get("bpp")]
    (out_dir / "summary.md").write_text("\n".join(md))
    log(f"wrote {out_dir}/summary.md, rd.png, per_image.csv and one JSON per codec")
    if as_json:
        click.echo(json.dumps(curves))


def _jpeg_check(curves: list[dict], pub: dict) -> str | None:
    """Per-quality PSNR/bpp difference against CompressAI's JPEG (qualities 5..95)."""
    ours = next((c for c in curves if c["name"] == "jpeg"), None)
    if ours is None:
        return None
    r = ours["results"]
    q_pub = list(range(5, 100, 5))
    rows = ["| quality | bpp here | bpp published | PSNR here | PSNR published | ΔPSNR |", "|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for i, q in enumerate(q_pub):
        if q in r["point"] and i < len(pub["results"]["bpp"]):
            j = r["point"].index(q)
            d = r["psnr-rgb"][j] - pub["results"]["psnr-rgb"][i]
            worst = max(worst, abs(d))
            rows.append(f"| {q} | {r['bpp'][j]:.4f} | {pub['results']['bpp'][i]:.4f} | {r['psnr-rgb'][j]:.3f} | "
                        f"{pub['results']['psnr-rgb'][i]:.3f} | {d:+.3f} |")
    return f"Largest |ΔPSNR| at equal quality: {worst:.3f} dB.\n\n" + "\n".join(rows)


def _write_per_image(path: Path, records: list[dict]) -> None:
    import csv

    keys = ["codec", "point", "image", "width", "height", "bytes", "bpp", "psnr", "mse", "ms_ssim",
            "encode_s", "decode_s", "ref_s", "speed", "peak_rss_mb", "num_coefs", "net_width", "encoder_psnr",
            "rate_ok", "lossless", "model"]
    keys += ["alpha_psnr"] * any("alpha_psnr" in r for r in records)  # pictures with transparency (None: exact)
    records = sorted(records, key=lambda r: (r["codec"], r["point"], r["image"]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)


def _command() -> str:
    prog = Path(sys.argv[0]).name
    prog = "pranc" if prog in ("__main__.py", "cli.py") else prog  # python -m pranc_codec
    return " ".join(shlex.quote(a) for a in [prog] + sys.argv[1:])


def _machine() -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    eval_command(prog_name="rd-eval")
