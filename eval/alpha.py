"""Pictures with transparency (format version 11): pranc against WebP and AVIF, which also keep an alpha channel.

    python eval/alpha.py pictures DIR [--kodak ../shared/data/kodak]   # write the test pictures (PNG, RGBA)
    python eval/alpha.py run DIR --bpp 0.25,0.5,1 --out eval/results-alpha [--threads 1] [--exact-alpha]

The pictures are made from Kodak's (never copied into the repository): a photograph cut out along an ellipse
(anti-aliased edge), a logo (a disc and text on nothing), an icon (a photograph in a rounded square over a soft
drop shadow) and a product shot (an aeroplane cut out of its sky, with a soft edge), plus a grey
cut-out. Every metric is of what a viewer sees: the colour's PSNR over the pixels whose alpha is not 0, and the
alpha's own PSNR (inf: exact). pranc keeps its default (the alpha exact where the colour is, else within 50 dB),
or with ``--exact-alpha`` (``pranc encode --alpha exact``) an exact alpha always. Rates are bits per pixel of
the whole picture, alpha included. WebP is lossy colour with lossless alpha (libwebp's default, alpha_quality
100); AVIF codes its alpha lossy at the colour's quality (libavif's default through Pillow). Each peer is swept
over its quality setting and its PSNR read at pranc's rate, interpolated in log bpp; "-" where pranc's rate is
outside the peer's range.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pranc_codec.alpha import visible_mse  # noqa: E402
from pranc_codec.codec import decode, encode  # noqa: E402
from pranc_codec.config import CodecConfig  # noqa: E402
from pranc_codec.image_io import read_image  # noqa: E402
from pranc_codec.metrics import psnr_of_mse  # noqa: E402

QUALITIES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)


def _supersampled_mask(size: tuple[int, int], draw, k: int = 4) -> Image.Image:
    """An anti-aliased mask: ``draw(ImageDraw, k)`` draws at k times the size, then Lanczos down."""
    big = Image.new("L", (size[0] * k, size[1] * k), 0)
    draw(ImageDraw.Draw(big), k)
    return big.resize(size, Image.LANCZOS)


def make_pictures(out: Path, kodak: Path) -> None:
    """Write the test pictures to ``out`` (RGBA or LA PNGs; the hidden pixels' colour set to 0, as editors
    often leave it)."""
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str, img: Image.Image) -> None:
        a = np.asarray(img).copy()
        a[a[..., -1] == 0, :-1] = 0
        Image.fromarray(a).save(out / f"{name}.png")

    parrots = Image.open(kodak / "kodim23.png").convert("RGB")
    cut = parrots.copy()
    cut.putalpha(_supersampled_mask(cut.size, lambda d, k: d.ellipse((400 * k, 15 * k, 740 * k, 500 * k), fill=255)))
    save("cutout", cut)
    grey = cut.convert("LA")
    save("cutout-grey", grey)

    logo = Image.new("RGBA", (768, 512), (255, 255, 255, 0))
    d = ImageDraw.Draw(logo)
    font = ImageFont.load_default(size=90)
    d.ellipse((40, 120, 300, 380), fill=(220, 60, 30, 255))
    d.text((330, 190), "pranc", font=font, fill=(30, 40, 120, 255))
    save("logo", logo)

    icon = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    shadow = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(shadow).rounded_rectangle((90, 100, 440, 450), radius=60, fill=140)
    icon.putalpha(shadow.filter(ImageFilter.GaussianBlur(18)))
    face = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    ImageDraw.Draw(face).rounded_rectangle((70, 70, 420, 420), radius=60, fill=(40, 150, 90, 255))
    face.paste(Image.open(kodak / "kodim07.png").convert("RGB").crop((200, 100, 450, 350)), (120, 120))
    save("icon", Image.alpha_composite(icon, face))

    # a product shot: kodim20's aeroplane cut out of its pale sky (bright and grey), the edge softened
    shot = Image.open(kodak / "kodim20.png").convert("RGB")
    arr = np.asarray(shot).astype(np.int32)
    sky = (arr.min(axis=2) > 170) & (arr.max(axis=2) - arr.min(axis=2) < 40)
    mask = Image.fromarray(((~sky) * 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(9))
    shot.putalpha(mask.filter(ImageFilter.GaussianBlur(1.2)))
    save("product", shot)

def _peer(image: np.ndarray, fmt: str, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded uint8 (H, W, C + 1)) of the picture through Pillow's ``fmt`` at ``quality``."""
    mode = "LA" if image.shape[2] == 2 else "RGBA"
    pil = Image.fromarray(image if mode == "RGBA" else image, mode)
    if mode == "LA":
        pil = pil.convert("RGBA")  # neither codec has grey with alpha
    buf = io.BytesIO()
    pil.save(buf, fmt, quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        out = np.asarray(im.convert("RGBA"))
    if mode == "LA":
        out = np.concatenate([np.asarray(Image.fromarray(out[..., :3]).convert("L"))[..., None], out[..., 3:]], 2)
    return len(buf.getvalue()), out


def _measure(image: np.ndarray, decoded: np.ndarray, nbytes: int) -> dict:
    h, w = image.shape[:2]
    return {"bpp": 8 * nbytes / (h * w), "bytes": nbytes,
            "psnr": psnr_of_mse(visible_mse(image[..., :-1], decoded[..., :-1], image[..., -1] > 0)),
            "alpha_psnr": psnr_of_mse(float(np.mean((image[..., -1].astype(float) - decoded[..., -1]) ** 2)))}


def _at(curve: list[dict], bpp: float) -> float | None:
    """The curve's PSNR at ``bpp``, interpolated in log bpp; None outside it."""
    pts = sorted((c["bpp"], c["psnr"]) for c in curve)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1 and b1 > b0:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return p0 + t * (p1 - p0)
    return None


def run(folder: Path, bpps: list[float], out: Path, threads: int, exact_alpha: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for path in sorted(folder.glob("*.png")):
        image, _ = read_image(path, keep_alpha=True)
        assert image.shape[2] in (2, 4), f"{path} has no transparency"
        row: dict = {"size": list(image.shape), "png_bpp": 8 * path.stat().st_size / (image.shape[0] * image.shape[1])}
        for fmt in ("WEBP", "AVIF"):
            row[fmt.lower()] = [_measure(image, dec, n) for n, dec in (_peer(image, fmt, q) for q in QUALITIES)]
        row["pranc"] = []
        for bpp in bpps:
            cfg = CodecConfig()
            cfg = replace(cfg, rate=replace(cfg.rate, bpp=bpp), fit=replace(cfg.fit, threads=threads))
            if exact_alpha:
                cfg = replace(cfg, alpha=replace(cfg.alpha, min_db=math.inf))
            t0 = time.perf_counter()
            r = encode(image, cfg)
            m = _measure(image, decode(r.data), len(r.data))
            m.update(model=r.stats.model, alpha_bytes=r.stats.alpha_bytes, target=bpp, alpha_db=r.stats.alpha_psnr,
                     encode_s=round(time.perf_counter() - t0, 1))
            row["pranc"].append(m)
            print(path.stem, m, flush=True)
        results[path.stem] = row
    (out / "alpha.json").write_text(json.dumps(results, indent=1, default=lambda v: None))
    lines = ["| picture | target | pranc: bpp, kind, PSNR (alpha: bytes, dB) | WebP at that rate | AVIF at that rate "
             "(its alpha's PSNR) |", "|---|---:|---|---:|---:|"]
    for name, row in results.items():
        for m in row["pranc"]:
            webp, avif = _at(row["webp"], m["bpp"]), _at(row["avif"], m["bpp"])
            near = min(row["avif"], key=lambda c: abs(math.log(c["bpp"] / m["bpp"])))
            lines.append(f"| {name} | {m['target']:g} | {m['bpp']:.4f}, {m['model']}, {m['psnr']:.2f} dB "
                         f"({m['alpha_bytes']}, {m['alpha_db']:.1f}) | {'-' if webp is None else f'{webp:.2f}'} | "
                         f"{'-' if avif is None else f'{avif:.2f}'} ({near['alpha_psnr']:.1f} dB) |")
    (out / "alpha.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pictures")
    p.add_argument("dir", type=Path)
    p.add_argument("--kodak", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    r = sub.add_parser("run")
    r.add_argument("dir", type=Path)
    r.add_argument("--bpp", default="0.25,0.5,1")
    r.add_argument("--out", type=Path, default=Path("eval/results-alpha"))
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--exact-alpha", action="store_true")
    a = ap.parse_args()
    if a.cmd == "pictures":
        make_pictures(a.dir, a.kodak)
    else:
        run(a.dir, [float(b) for b in a.bpp.split(",")], a.out, a.threads, a.exact_alpha)


if __name__ == "__main__":
    main()
