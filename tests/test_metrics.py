"""MS-SSIM in strips against pytorch-msssim's own function."""
import importlib

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as library_ms_ssim

from pranc_codec import metrics

from .conftest import smooth_image

# the module, not the function the package exports under the same name
library_ssim = importlib.import_module("pytorch_msssim.ssim")


def _pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (h, w, 3): a smooth picture and a noisy copy of it."""
    a = smooth_image(h, w, 3, seed=3)
    noise = np.random.RandomState(1).randint(-12, 13, a.shape)
    return a, np.clip(a.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _library(a: np.ndarray, b: np.ndarray) -> float:
    t = [torch.from_numpy(v.astype(np.float32)).permute(2, 0, 1)[None] for v in (a, b)]
    return float(library_ms_ssim(t[0], t[1], data_range=255.0))


def test_a_kodak_sized_picture_is_one_strip_and_gets_the_librarys_value_exactly():
    a, b = _pair(512, 768)
    assert 512 * 768 <= metrics._STRIP_PIXELS
    assert metrics.ms_ssim(a, b) == _library(a, b)


@pytest.mark.parametrize("h,w", [(161, 161), (333, 501), (200, 777), (512, 768)])
def test_strips_give_the_librarys_value(monkeypatch, h, w):
    a, b = _pair(h, w)
    calls = []
    real = library_ssim._ssim
    monkeypatch.setattr(metrics, "_STRIP_PIXELS", 7 * w)  # 7 map rows a strip at level 0
    monkeypatch.setattr(library_ssim, "_ssim", lambda *p, **k: calls.append(1) or real(*p, **k))
    value = metrics.ms_ssim(a, b)
    assert len(calls) > 5 + (h - 10) // 7  # several strips at least at level 0
    assert value == pytest.approx(_library(a, b), abs=1e-6)
    assert value < 0.999  # the noise is seen


def test_identical_pictures_score_one_and_small_ones_none():
    a, _ = _pair(200, 300)
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ms_ssim(a[:160], a[:160]) is None
    assert metrics.ms_ssim(a[:161, :161], a[:161, :161]) is not None


def test_strips_side_by_side_give_the_same_value_as_one_after_the_other(monkeypatch):
    """With torch held to one thread (as in an encode) and two cores, the strips run on two Python threads: the
    value is the serial one to the last bit (the same sums in the same order), and both threads did work."""
    import threading

    a, b = _pair(333, 501)
    monkeypatch.setattr(metrics, "_STRIP_PIXELS", 7 * 501)
    real = library_ssim._ssim
    seen = set()
    monkeypatch.setattr(library_ssim, "_ssim", lambda *p, **k: seen.add(threading.get_ident()) or real(*p, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(metrics, "available_cores", lambda: 1)
        serial = metrics.ms_ssim(a, b)
        assert len(seen) == 1
        seen.clear()
        monkeypatch.setattr(metrics, "available_cores", lambda: 2)
        assert metrics.ms_ssim(a, b) == serial
        assert len(seen) > 1  # pool threads (a pool a scale)
    finally:
        torch.set_num_threads(before)
