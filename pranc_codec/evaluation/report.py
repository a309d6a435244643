"""Markdown tables and the figure from aggregated curves."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .bjontegaard import bd_quality, bd_rate, msssim_db


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def bd_table(curves: list[dict[str, Any]], ref: dict[str, Any], method: str = "pchip") -> str:
    """BD-rate / BD-PSNR of every curve against ``ref`` (Markdown)."""
    lines = [f"| codec | BD-rate PSNR vs {ref['name']} | BD-PSNR (dB) | BD-rate MS-SSIM | bpp range |",
             "|---|---:|---:|---:|---|"]
    r0 = ref["results"]
    for c in curves:
        r = c["results"]
        if not r.get("bpp"):
            continue
        rate = bd_rate(r0["bpp"], r0["psnr-rgb"], r["bpp"], r["psnr-rgb"], method)
        dq = bd_quality(r0["bpp"], r0["psnr-rgb"], r["bpp"], r["psnr-rgb"], method)
        ms = None
        if r0.get("ms-ssim-rgb") and r.get("ms-ssim-rgb") and None not in r["ms-ssim-rgb"]:
            ms = bd_rate(r0["bpp"], msssim_db(r0["ms-ssim-rgb"]), r["bpp"], msssim_db(r["ms-ssim-rgb"]), method)
        tag = " (published)" if c.get("file") else ""
        lines.append(f"| {c['name']}{tag} | {_fmt(rate, '+.1f')}% | {_fmt(dq, '+.2f')} | "
                     f"{_fmt(ms, '+.1f') + '%' if ms is not None else '–'} | "
                     f"{min(r['bpp']):.3f}–{max(r['bpp']):.3f} |")
    return "\n".join(lines)


def points_table(curve: dict[str, Any]) -> str:
    """One row per rate point of a measured curve (Markdown)."""
    r = curve["results"]
    lines = [f"**{curve['name']}** — {curve['description']}", "",
             "| point | bpp | PSNR (mean dB) | PSNR (of mean MSE) | MS-SSIM | encode s (mean / max) | decode s "
             "| peak RSS MB | encode s at reference speed (mean / max) | machine speed |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i in range(len(r["bpp"])):
        ms = r["ms-ssim-rgb"][i]
        rss = r["peak_rss_mb"][i]
        exact = (r.get("exact") or [0] * len(r["bpp"]))[i]
        at_ref = (r.get("encoding_time_at_reference") or [None] * len(r["bpp"]))[i]
        speed = (r.get("speed") or [None] * len(r["bpp"]))[i]
        lines.append(f"| {r['point'][i]:g} | {r['bpp'][i]:.4f} | {_fmt(r['psnr-rgb'][i], '.2f')} | "
                     f"{_fmt(r['psnr-rgb-mse'][i], '.2f')}{f' ({exact} exact)' if exact else ''} | "
                     f"{_fmt(ms, '.4f')} | {r['encoding_time'][i]:.2f} / {r['max_encoding_time'][i]:.2f} | "
                     f"{r['decoding_time'][i]:.3f} | {_fmt(rss, '.0f')} | "
                     + ("– | – |" if at_ref is None else f"{at_ref:.2f} / "
                        f"{r['max_encoding_time_at_reference'][i]:.2f} | {speed[0]:.2f}–{speed[1]:.2f} |"))
    return "\n".join(lines)


MIN_AXIS_BPP = 1.25  # the rate axis spans at least Kodak's usual 0-1 bpp (and the published curves there)
AXIS_MARGIN = 1.1  # and 10 % past the highest rate a neural codec was measured at
PSNR_AXIS = (20.0, 40.0)  # dB, widened upward in steps of 5 to the highest point drawn


def axis_limits(neural: list[dict[str, Any]], curves: list[dict[str, Any]]) -> tuple[float, float]:
    """(largest bpp, largest PSNR in dB) of the figure's axes: the rate axis covers every point of the ``neural``
    curves (a run at 2 and 4 bpp is drawn, not cut off at 1.25), the PSNR axis every point of ``curves`` within it."""
    # (a curve may be empty: a --cached-only report of points not in the cache)
    top_bpp = max([b for c in neural for b in c["results"].get("bpp") or []], default=0.0)
    max_bpp = max(MIN_AXIS_BPP, AXIS_MARGIN * top_bpp)
    peak = max([v for c in curves for b, v in zip(c["results"].get("bpp") or [], c["results"].get("psnr-rgb") or [])
                if v is not None and b <= max_bpp], default=PSNR_AXIS[1])
    return max_bpp, max(PSNR_AXIS[1], 5.0 * math.ceil(peak / 5.0))


def plot(measured: list[dict[str, Any]], published: list[dict[str, Any]], path: Path,
         max_bpp: float = MIN_AXIS_BPP, title: str = "Kodak", psnr_top: float = PSNR_AXIS[1]) -> None:
    """PSNR and MS-SSIM panels: measured curves solid, published anchors dashed, bpp up to ``max_bpp`` and PSNR
    up to ``psnr_top`` dB (:func:`axis_limits`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 7.5))
    # one colour per curve in both panels; measured curves get the strong colours
    names = [c["name"] for c in measured] + [f"{c['name']} (published)" for c in published]
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors) + list(plt.get_cmap("Set1").colors)
    colour = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    for ax, key, label in ((axes[0], "psnr-rgb", "PSNR RGB (dB)"), (axes[1], "ms-ssim-rgb", "MS-SSIM RGB")):
        for c in published:
            r = c["results"]
            name = f"{c['name']} (published)"
            if r.get(key):
                xs, ys = zip(*[(b, v) for b, v in zip(r["bpp"], r[key]) if b <= max_bpp] or [(None, None)])
                if xs[0] is not None:
                    ax.plot(xs, ys, "--", lw=1, alpha=0.7, color=colour[name], label=name)
        for c in measured:
            r = c["results"]
            # None: a point without a mean (exact images' PSNR is infinite; greyscale has no MS-SSIM)
            drawn = [(b, v) for b, v in zip(r.get("bpp") or [], r.get(key) or []) if v is not None]
            if drawn:
                style = "-o" if c["name"].startswith(("pranc", "direct")) else "-"
                lw = 2.6 if c["name"].startswith("pranc") else 1.5
                ax.plot(*zip(*drawn), style, lw=lw, ms=5, color=colour[c["name"]], label=c["name"])
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.set_xlim(0, max_bpp)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(PSNR_AXIS[0], psnr_top)
    axes[1].set_ylim(0.8, 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
