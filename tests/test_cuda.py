"""CUDA: encoding there works, and a file decodes to the same pixels on the GPU and the CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``. The other suites run there too: with the
default ``device="auto"`` their encodes use the GPU.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pranc_codec import CodecConfig, decode, encode
from pranc_codec.codec import plan
from pranc_codec.config import GridConfig, RateConfig
from pranc_codec.metrics import psnr
from pranc_codec.subspace import Subspace

from .conftest import FAST, smooth_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

GRID = CodecConfig(rate=RateConfig(bpp=2.0), grid=GridConfig(steps=600, batch_pixels=4096))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return smooth_image(64, 96, 3, seed=11)


@pytest.mark.parametrize("config", [GRID, FAST], ids=["grid", "siren"])
def test_cuda_encode_matches_cpu_encode_in_quality(image, config):
    cpu = encode(image, replace(config, device="cpu"))
    gpu = encode(image, replace(config, device="cuda"))
    assert gpu.stats.device.startswith("cuda") and cpu.stats.device == "cpu"
    # different float summation orders give different files, not different codecs
    assert abs(gpu.stats.psnr - cpu.stats.psnr) < 1.0
    assert abs(gpu.stats.bpp - cpu.stats.bpp) < 0.1 * cpu.stats.bpp
    out = decode(gpu.data)
    assert psnr(image, out) == gpu.stats.psnr


@pytest.mark.parametrize("config", [GRID, FAST], ids=["grid", "siren"])
def test_decode_on_cuda_gives_the_cpu_pixels(image, config):
    data = encode(image, replace(config, device="cpu")).data
    assert np.array_equal(decode(data, device="cuda"), decode(data, device="cpu"))


def test_basis_on_cuda_is_the_cpu_basis():
    """The encoder's basis blocks are generated on the host (integer hashing) and copied: bit for bit the same."""
    spec = plan(FAST, 48, 64, 3)
    cpu, gpu = Subspace(spec, "cpu"), Subspace(spec, "cuda")
    names = [n for n, _ in cpu.named_buffers()]
    assert names and names == [n for n, _ in gpu.named_buffers()]
    for (name, a), (_, b) in zip(cpu.named_buffers(), gpu.named_buffers()):
        assert b.is_cuda and torch.equal(a, b.cpu()), name
    alpha = torch.from_numpy(np.random.RandomState(0).randn(spec.num_coefs)).float()
    for a, b in zip(cpu(alpha), gpu(alpha.cuda())):  # the fitting path: float32, so close, not equal
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
