"""Probe of ABLATIONS.md R1-R2: how the MLP reads the latents. Not the codec: it patches latent.sample_levels.

    UP=bicubic python eval/probe_latent_inputs.py IMAGE BPP NAME [section.field=value ...]   # R1
    NB=8 python eval/probe_latent_inputs.py IMAGE BPP NAME [...]                             # R2

UP: grid_sample mode of levels 1.. (level 0 is read at its own positions, where
every mode is the identity). NB: 4 or 8 neighbours of level 0 as extra MLP
inputs (the first layer grows). The file is real (its size is the rate); the
pixels are rendered in float32 through the patched sampler, which for the
default reproduces the decoder's PSNR to 1e-5 dB. One CSV row in the layout
of ``pranc eval``'s per_image.csv, for eval/equal_rate.py. Without UP and NB
it is the default encoder (used for the same-run baseline, "base").
"""
import csv, sys, time, os
from dataclasses import replace
import numpy as np, torch, torch.nn.functional as F
import pranc_codec.latent as L, pranc_codec.grid_fit as GF, pranc_codec.grid_codec as GC
from pranc_codec import bitstream
from pranc_codec.config import CodecConfig, apply_overrides
from pranc_codec.image_io import read_image
from pranc_codec.metrics import psnr, ms_ssim
from pranc_codec.quantization import dequantize

MODE = os.environ.get("UP", "bilinear")
GATHER0 = os.environ.get("G0", "0") == "1"

NB = int(os.environ.get("NB", "0"))  # level-0 neighbourhood: 0 none, 4 (cross), 8 (3x3)
OFFS = {0: [], 4: [(-1, 0), (1, 0), (0, -1), (0, 1)], 8: [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]}[NB]
_orig_dims = L.GridShape.layer_dims
def layer_dims(self):
    d = _orig_dims(self)
    return [(d[0][0] + len(OFFS), d[0][1])] + d[1:]
L.GridShape.layer_dims = layer_dims

def sample_levels(grids, py, px):
    out = []
    if OFFS:
        g0 = grids[0]; h, w = g0.shape
        yy, xx = py.long(), px.long()
        idx = torch.cat([(yy + dy).clamp(0, h - 1) * w + (xx + dx).clamp(0, w - 1) for dy, dx in OFFS])
        nb = g0.reshape(-1).index_select(0, idx).view(len(OFFS), -1)
    for level, g in enumerate(grids):
        h, w = g.shape
        if level == 0 and GATHER0:
            out.append(g.reshape(-1).index_select(0, (py * w + px).long()))
            continue
        s = 2.0 ** level
        u = (px + 0.5) * (2.0 / (s * w)) - 1.0
        v = (py + 0.5) * (2.0 / (s * h)) - 1.0
        loc = torch.stack([u, v], dim=-1).view(1, 1, -1, 2)
        mode = MODE if level > 0 else "bilinear"
        out.append(F.grid_sample(g.view(1, 1, h, w), loc, mode=mode, padding_mode="border", align_corners=False).view(-1))
    if OFFS:
        out = out + list(nb.unbind(0))
    return torch.stack(out, dim=0)

L.sample_levels = GF.sample_levels = GC.sample_levels = sample_levels

def main():
    path, bpp, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    image = read_image(path)[0]
    cfg = apply_overrides(CodecConfig(), [f"rate.bpp={bpp}"] + sys.argv[4:])
    t0 = time.perf_counter()
    data, shape = GC.fit_and_code(image, cfg, torch.device("cpu"))
    enc = time.perf_counter() - t0
    header, payload = bitstream.parse(data)
    lat, mlp_q = GC._read_v5(header, bitstream.split_segments(header, payload))
    weights = [torch.from_numpy(dequantize(q, float(s))).float() for q, s in zip(mlp_q, header.mlp_steps)]
    H, W, C = image.shape
    feats = GC._features([g.float() for g in lat], W, H * W)
    with torch.no_grad():
        out = L.mlp_forward(feats, L.split_params(weights, shape))
    rec = torch.round(out.clamp(0, 1) * 255).to(torch.uint8).numpy().reshape(H, W, C)
    row = dict(codec=name, point=0, image=os.path.basename(path)[:-4], width=W, height=H, bytes=len(data),
               bpp=8 * len(data) / (H * W), psnr=psnr(rec, image), mse=0, ms_ssim=ms_ssim(rec, image), encode_s=enc,
               decode_s=0, peak_rss_mb="", num_coefs="", net_width=shape.hidden, encoder_psnr="", rate_ok="")
    print(",".join(str(v) for v in row.values()), flush=True)

main()
