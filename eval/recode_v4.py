#!/usr/bin/env python3
"""Re-code version-4 grid files with the version-5 context coder: same latents and MLP, both sizes.

    python eval/recode_v4.py FILE.prc [...]

Prints one JSON line per file: bytes as version 4 and as version 5, and the
bucket count chosen for every (level, pass). Decoded pixels are checked equal.
(ABLATIONS.md, section M.)
"""
import json
import sys

import numpy as np

from pranc_codec import bitstream, decode
from pranc_codec.grid_codec import GridCode, pack
from pranc_codec.grid_decode import read_v4


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        data = open(path, "rb").read()
        header, payload = bitstream.parse(data)
        if not isinstance(header, bitstream.GridHeader) or header.version != 4:
            sys.exit(f"{path}: not a version-4 grid file")
        latents, mlp_q = read_v4(header, bitstream.split_segments(header, payload))
        code = GridCode(list(latents), list(mlp_q), list(header.mlp_steps))
        v5 = pack(code, header.shape, header.height, header.width)
        assert np.array_equal(decode(v5), decode(data))
        print(json.dumps({"file": path, "v4_bytes": len(data), "v5_bytes": len(v5),
                          "saving": round(1 - len(v5) / len(data), 4),
                          "buckets": list(bitstream.parse(v5)[0].buckets)}), flush=True)


if __name__ == "__main__":
    main()
