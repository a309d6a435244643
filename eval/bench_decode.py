#!/usr/bin/env python3
"""Benchmark: seconds to decode grid ``.prc`` files, split into the decoder's three phases.

One thread, torch's and the BLAS's (as the harness decodes; ``--threads N``: N strips of rows rendered and
filtered side by side, as ``pranc decode --threads N``), each file decoded ``--repeat`` times
after one warm-up; the fastest run of each phase is reported, since the
machine's load only ever adds time. Phases: ``read`` (container, entropy
decoding of the latents and the MLP, sublattice by sublattice), ``render``
(the latent grid's float64 sampling and the MLP, ``grid_codec._render``) and
``filter`` (``loop_filter.apply``). ``sha256`` is of the decoded pixels, so
two commits can be checked for the same output as well as timed: run it from
two worktrees on the same files, one after the other.

    python eval/bench_decode.py FILE.prc [FILE.prc ...] [--repeat 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, set before numpy loads
    os.environ[_var] = "1"

from pranc_codec import bitstream, grid_codec, grid_decode, loop_filter  # noqa: E402
from pranc_codec.bitstream import GridHeader, MetadataHeader  # noqa: E402


def phases(data: bytes, threads: int = 1) -> tuple[dict[str, float], str]:
    """Seconds of each phase of one decode, and the sha256 of the pixels."""
    t0 = time.perf_counter()
    header, payload = bitstream.parse(data)
    if isinstance(header, MetadataHeader):  # a picture's profile, EXIF or text around its grid file
        header, payload = header.picture, header.picture_payload
    if not isinstance(header, GridHeader) or header.version < 5:
        raise SystemExit("bench_decode times grid files of format version 5 and later")
    latents, mlp_q, flt = grid_decode.read_v5(header, bitstream.split_segments(header, payload))
    t1 = time.perf_counter()
    if threads > 1:  # (commits before session 43 render one strip at a time)
        pixels = grid_decode.render(latents, grid_decode.dequantize_mlp(mlp_q, header.mlp_steps), header.shape,
                                    header.height, header.width, threads)
    else:
        pixels = grid_codec._render(latents, mlp_q, header.mlp_steps, header.shape, header.height, header.width)
    t2 = time.perf_counter()
    if flt is not None:
        pixels = loop_filter.apply(pixels, flt, threads) if threads > 1 else loop_filter.apply(pixels, flt)
    t3 = time.perf_counter()
    return {"read": t1 - t0, "render": t2 - t1, "filter": t3 - t2, "total": t3 - t0}, \
        hashlib.sha256(pixels.tobytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="strips rendered and filtered side by side")
    args = ap.parse_args()
    import torch  # the SIREN's decoder and older commits' grid decoders use torch

    torch.set_num_threads(1)
    for path in args.files:
        data = open(path, "rb").read()
        _, digest = phases(data, args.threads)  # warm-up: first-call allocations and caches
        runs = [phases(data, args.threads)[0] for _ in range(args.repeat)]
        best = {k: round(min(r[k] for r in runs), 4) for k in runs[0]}
        print(json.dumps({"file": path, "threads": args.threads, **best, "sha256": digest[:16]}), flush=True)


if __name__ == "__main__":
    main()
