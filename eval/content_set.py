#!/usr/bin/env python3
"""Write a small set of pictures unlike Kodak's photographs, to find where pranc loses (RESULTS.md "content").

Kodak is 24 film scans of one size. A user also compresses screenshots with text, charts, flat-colour
graphics, noisy phone pictures, scientific fields and thumbnails, and bar charts, scatter plots, block diagrams,
slides and application windows (the five added in session 35). This script makes one of each, from what the
project's dependencies ship (matplotlib's sample data and its renderer, Pillow's built-in font) and from the
Kodak folder, so no picture is committed:

    python eval/content_set.py /tmp/content
    pranc eval --dataset /tmp/content --codecs pranc,jpeg,webp,avif --bpp 0.25,0.5,1,2 --out eval/results-content

The pictures are the same on every run of one environment (fixed data, a seeded numpy generator for the
noise); another matplotlib or Pillow version may render the text and the chart a few pixels differently.
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (768, 512)  # Kodak's landscape size, so rates and times compare with the Kodak runs
TEXT = ("pranc encode img.png -o img.prc      # fit, quantize, code\n"
        "pranc decode img.prc -o out.png      # the same pixels on any machine\n\n"
        "def encode(image: np.ndarray, config: CodecConfig) -> EncodeResult:\n"
        "    \"\"\"uint8 (H, W, C) -> .prc bytes and the encoder's statistics.\"\"\"\n"
        "    shape = plan(config, *image.shape)\n"
        "    fit = fit_grid(target, shape, settings, latent_bpp)\n"
        "    return pack(code, shape, height, width)\n\n"
        "Rate-distortion on Kodak: BD-rate -42.7 % against JPEG (PSNR).\n"
        "Bad input gets one line on stderr and a non-zero exit code.")


def _sample(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def text_screenshot() -> Image.Image:
    """Dark text on a light editor background with a coloured gutter: sharp edges, two colours, anti-aliasing."""
    im = Image.new("RGB", SIZE, (250, 250, 246))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 44, SIZE[1]), fill=(226, 232, 240))
    font = ImageFont.load_default(size=15)
    for i, line in enumerate((TEXT + "\n\n" + TEXT).split("\n")):  # the page full, as a screenshot is
        y = 14 + 22 * i
        d.text((8, y), f"{i + 1:>3}", fill=(120, 130, 150), font=font)
        colour = (0, 90, 160) if line.startswith(("def", "pranc")) else (30, 30, 30)
        d.text((56, y), line, fill=colour, font=font)
    return im


def chart() -> Image.Image:
    """A matplotlib figure: lines, markers, a legend, axis labels on white."""
    x = np.linspace(0.1, 1.0, 40)

    def draw(ax):
        for k, (name, c) in enumerate([("pranc", "C0"), ("JPEG", "C1"), ("WebP", "C2"), ("AVIF", "C3")]):
            ax.plot(x, 24 + 6 * np.log2(1 + 4 * x) - 1.2 * k + 0.3 * np.sin(7 * x + k), "-o", color=c, ms=3,
                    label=name)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return _figure(draw)


def field() -> Image.Image:
    """matplotlib's topography sample (91 x 120 heights) through a colormap, upsampled: a smooth field with
    contour-like colour bands, as scientific pictures are."""
    import matplotlib

    z = np.load(_sample("topobathy.npz"))["topo"].astype(np.float64)
    z = (z - z.min()) / (z.max() - z.min())
    rgb = (matplotlib.colormaps["gist_earth"](z)[:, :, :3] * 255).round().astype(np.uint8)
    return Image.fromarray(rgb).resize(SIZE, Image.BICUBIC)


def noisy(kodak: Path) -> Image.Image:
    """kodim15 with Gaussian noise of sigma 8 (a dim phone picture's sensor noise), seeded."""
    a = np.asarray(Image.open(kodak / "kodim15.png").convert("RGB")).astype(np.float64)
    a = a + np.random.default_rng(15).normal(0.0, 8.0, a.shape)
    return Image.fromarray(np.clip(a.round(), 0, 255).astype(np.uint8))


def portrait() -> Image.Image:
    """matplotlib's photograph of Grace Hopper (512 x 600, itself once a JPEG)."""
    return Image.open(_sample("grace_hopper.jpg")).convert("RGB")


def graphic() -> Image.Image:
    """matplotlib's 128 x 128 cartoon icon on white, scaled to 256 x 256 with its hard edges kept (nearest)."""
    im = Image.open(_sample("Minduka_Present_Blue_Pack.png")).convert("RGBA")
    flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
    flat.alpha_composite(im)
    return flat.convert("RGB").resize((256, 256), Image.NEAREST)


def _figure(draw) -> Image.Image:
    """A matplotlib figure of SIZE drawn by ``draw(ax)``, as RGB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(SIZE[0] / 100, SIZE[1] / 100), dpi=100)
    draw(ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return Image.open(buf).convert("RGB")  # figsize x dpi = SIZE


def bars() -> Image.Image:
    """A matplotlib bar chart with a title and grid lines: large flat areas, straight edges."""
    heights = np.random.default_rng(3).uniform(2, 10, 12)

    def draw(ax):
        ax.bar(np.arange(12), heights, color=[f"C{i % 4}" for i in range(12)])
        ax.set_title("monthly totals")
        ax.grid(True, axis="y")
    return _figure(draw)


def scatter() -> Image.Image:
    """A matplotlib scatter plot of 1,500 small points in a colormap: dense, scattered detail on white."""
    rng = np.random.default_rng(4)
    x, y, c = rng.normal(size=1500), rng.normal(size=1500), rng.uniform(size=1500)

    def draw(ax):
        ax.scatter(x, y, s=6, c=c, cmap="viridis")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    return _figure(draw)


def diagram() -> Image.Image:
    """A block diagram: six rounded boxes in three pastel fills with labels, joined by red lines, on white."""
    im = Image.new("RGB", SIZE, (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=18)
    boxes = [(40, 60, "image.png"), (280, 60, "fit INR"), (520, 60, "quantize"), (520, 300, "entropy code"),
             (280, 300, "container"), (40, 300, "img.prc")]
    for i, (x, y, label) in enumerate(boxes):
        fill = [(220, 235, 250), (250, 235, 215), (225, 245, 225)][i % 3]
        d.rounded_rectangle((x, y, x + 200, y + 90), 12, fill=fill, outline=(40, 40, 40), width=2)
        d.text((x + 20, y + 35), label, fill=(20, 20, 20), font=font)
    for a, b in zip(boxes, boxes[1:]):
        d.line(((a[0] + 100, a[1] + 45), (b[0] + 100, b[1] + 45)), fill=(200, 30, 30), width=3)
    return im


def slide() -> Image.Image:
    """A presentation slide: a horizontal colour gradient, a large white title and four yellow bullets."""
    g = np.linspace(0, 1, SIZE[0])[None, :, None]
    bg = ((1 - g) * np.array([20, 40, 90]) + g * np.array([60, 20, 80])) * np.ones((SIZE[1], 1, 1))
    im = Image.fromarray(bg.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.text((50, 40), "Neural image codecs", fill=(255, 255, 255), font=ImageFont.load_default(size=48))
    for i, line in enumerate(["random bases from a seed", "latent grids and a small MLP", "rate-distortion fitting",
                              "beats JPEG at every rate"]):
        d.text((70, 160 + 60 * i), "- " + line, fill=(230, 230, 120), font=ImageFont.load_default(size=28))
    return im


def ui() -> Image.Image:
    """An application window: a dark menu bar, a sidebar of folder names and a grid of 27 outlined items with
    small text (13 px)."""
    rng = np.random.default_rng(5)
    im = Image.new("RGB", SIZE, (240, 240, 240))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=13)
    d.rectangle((0, 0, SIZE[0], 32), fill=(50, 60, 70))
    d.text((12, 8), "File  Edit  View  Tools  Help", fill=(255, 255, 255), font=font)
    d.rectangle((0, 32, 180, SIZE[1]), fill=(225, 228, 232))
    for i in range(14):
        d.text((14, 46 + 30 * i), f"folder_{i:02d}/", fill=(30, 30, 30), font=font)
    for r in range(9):
        for c in range(3):
            x, y = 200 + 185 * c, 50 + 50 * r
            d.rounded_rectangle((x, y, x + 170, y + 38), 6, fill=(255, 255, 255), outline=(180, 180, 190))
            d.text((x + 10, y + 12), f"item {r * 3 + c}: {rng.integers(1000, 9999)} kB", fill=(40, 40, 40), font=font)
    return im


def thumbnail(kodak: Path) -> Image.Image:
    """kodim23 reduced to 192 x 128 (a thumbnail: detail dense per pixel, and a file's fixed costs large)."""
    return Image.open(kodak / "kodim23.png").convert("RGB").resize((192, 128), Image.LANCZOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--kodak", type=Path, default=Path(os.environ.get("PRANC_DATASET", "../shared/data/kodak")))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    pictures = {"text": text_screenshot(), "chart": chart(), "field": field(), "noisy": noisy(a.kodak),
                "portrait": portrait(), "graphic": graphic(), "thumbnail": thumbnail(a.kodak),
                "bars": bars(), "scatter": scatter(), "diagram": diagram(), "slide": slide(), "ui": ui()}
    for name, im in pictures.items():
        im.save(a.out / f"{name}.png")
        print(f"{name}.png {im.size[0]}x{im.size[1]}")


if __name__ == "__main__":
    main()
