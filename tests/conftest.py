"""Shared fixtures: small synthetic images and a fast encoder configuration."""
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from pranc_codec import CodecConfig, encode
from pranc_codec.config import FitConfig, RateConfig

torch.set_num_threads(2)


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default.

    A shell without job control starts a background command with SIGINT ignored, the child inherits
    that, and Python then installs no KeyboardInterrupt handler: the test would wait out its timeout.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def smooth_image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth colourful test picture (uint8 (h, w, c)) an INR can fit quickly."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(c):
        fx, fy, ph = rs.uniform(1, 4), rs.uniform(1, 4), rs.uniform(0, 6)
        chans.append(0.5 + 0.4 * np.sin(2 * np.pi * (fx * x / w + fy * y / h) + ph))
    return np.clip(np.rint(np.stack(chans, -1) * 255), 0, 255).astype(np.uint8)


# the SIREN model (format v3); the latent-grid model has its own fixtures in test_grid.py
FAST = CodecConfig(rate=RateConfig(bpp=2.0), fit=FitConfig(steps=300, qat_steps=20, batch_pixels=4096, threads=2),
                   model="siren")


def fast_config(**rate) -> CodecConfig:
    return replace(FAST, rate=replace(FAST.rate, **rate)) if rate else FAST


@pytest.fixture(scope="session")
def rgb_image() -> np.ndarray:
    return smooth_image(48, 64, 3)


@pytest.fixture(scope="session")
def rgb_encoded(rgb_image):
    return encode(rgb_image, FAST)
