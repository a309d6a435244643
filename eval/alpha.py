"""Pictures with transparency (format version 11) for the harness, made from Kodak's (never copied into the
repository):

    python eval/alpha.py DIR [--kodak ../shared/data/kodak]
    pranc eval --dataset DIR --codecs pranc,jpeg,webp,avif --bpp 0.25,0.5,1 --out eval/results-alpha/harness

A photograph cut out along an ellipse (anti-aliased edge), the same in grey, a logo (a disc and text on nothing),
an icon (a photograph in a rounded square over a soft drop shadow) and a product shot (an aeroplane cut out of its
sky, with a soft edge), as RGBA or LA PNGs, the hidden pixels' colour 0, as editors often leave it. The harness
codes them with their alpha (WebP and AVIF keep it too; JPEG decodes opaque) and measures the colour's PSNR and
MS-SSIM where the alpha is not 0, and the alpha's PSNR (None: exact). (Session 39's first runs, in
``eval/results-alpha/`` and ``exact/``, were made by an earlier ``run`` command of this script, at ``4863b57``.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


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

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--kodak", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    a = ap.parse_args()
    make_pictures(a.dir, a.kodak)


if __name__ == "__main__":
    main()
