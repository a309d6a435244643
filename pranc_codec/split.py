"""A large photograph as side-by-side strips of columns, each fitted by its own network in its own process.

One network fit barely uses a second core: a step is many small operations (one Kodak encode took 38.7 s on one
thread, 36.8 s on two; ABLATIONS.md AX), and a large picture's fit takes minutes. Its strips, fitted side by
side in processes of their own, use every core. Each strip's fit samples its area's share of the whole picture's
batch, so that the strips together do the whole fit's work (one after the other, in one process, they take about
its time), and each has its own network: on mosaics of Kodak pictures from 1536 x 1024 to 3840 x 3072 at
0.125-1 bpp, two strips took 0.66-0.77 x the whole picture's time and gained 0.06-0.64 dB (ABLATIONS.md AZ),
four strips instead of two gained 0.08-0.40 dB more at 3072 x 2048 and 3840 x 3072 in the same time where
each strip had 393 k bits or more, and lost 0.11-0.12 dB at 157 k bits on smooth pictures (BA4), and eight
instead of four gained 0.05-0.45 dB at 368-393 k bits a strip (BB4): a strip per 300 k bits of the file, two,
four or eight (``SplitConfig``).

The file is a composite file (format version 10, composite.py) whose regions are the strips and whose base, a
picture of one colour, is all covered: no new format, and the decoder is the composite's. Each strip's fit runs
on one thread whatever the machine, so the file does not depend on how many cores encoded it.

The strips' rates are not equal: a picture's detail is rarely spread evenly, and one network's rate control
spends its bits where they buy most across the whole picture. Each strip gets the picture's rate in proportion to
the size of its JPEG at one quality (Pillow, about 30 ms a megapixel), a proxy for how many bits it needs for the
same quality (``SplitConfig.proxy_quality``).
"""
from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from functools import partial
from itertools import accumulate
from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image

from . import grid_codec, lossless, seam
from .batch import CHILD_ENV, PEAK_BYTES, available_cores, available_memory, compute_threads
from .bitstream import MAX_REGIONS, composite_overhead, pack_composite
from .composite import Box
from .config import CodecConfig, SplitConfig
from .decoder import decode as decode_file
from .errors import FormatError, InputError, LimitError, PrancError
from .grid_fit import batch_size

CPU = torch.device("cpu")  # strips are fitted on the CPU (a CUDA fit is one process using the device whole)


def strips(height: int, width: int, cfg: SplitConfig, budget_bits: float = 0.0) -> list[Box]:
    """The picture's strips of whole columns, left to right (one where it is not to be split): for a picture of at
    least ``cfg.min_pixels``, one per ``cfg.strip_bits`` of the file's ``budget_bits`` and ``cfg.strip_pixels``
    pixels at most, ``cfg.min_strips`` times a power of two up to ``cfg.max_strips``; all but the last of a width
    that is a multiple of ``cfg.align`` pixels (so that every strip's coarsest latent grid lines up with the
    picture's), as near equal as that allows. (Rows for a portrait picture measured level: ABLATIONS.md BB3.)"""
    pixels = height * width
    align = max(cfg.align, 1)
    if pixels < cfg.min_pixels:
        count = 1
    else:
        most = min(cfg.max_strips, MAX_REGIONS, pixels // max(cfg.strip_pixels, 1), width // align)
        count = max(cfg.min_strips, min(most, int(budget_bits // max(cfg.strip_bits, 1.0))))
        # min_strips times a power of two (2, 4, 8): whole rounds on two, four or eight cores. Three strips on two
        # cores left one idle while the third was fitted, 1.26 x the time of two for the same file quality
        # (ABLATIONS.md BA4); six on four cores would take two rounds, as eight do.
        unit = max(cfg.min_strips, 1)
        count = unit << max(0, (count // unit).bit_length() - 1)
    count = max(1, min(count, width // align))  # never a strip narrower than the alignment
    if count == 1:
        return [Box(0, 0, width, height)]
    # whole units of the alignment shared out as evenly as they go, the first strips taking one more where they do
    # not divide, the last the picture's rest under one unit: on more cores than strips the largest strip sets the
    # time (3840 columns in eight: 512 and 448, where equal multiples of 64 left the last one 704)
    units, extra = divmod(width // align, count)
    sizes = [(units + (i < extra)) * align for i in range(count)]
    sizes[-1] += width - sum(sizes)
    edges = [0, *accumulate(sizes)]
    return [Box(x0, 0, x1 - x0, height) for x0, x1 in zip(edges[:-1], edges[1:])]


def applies(image: np.ndarray, config: CodecConfig, on_cpu: bool) -> bool:
    """Whether ``encode`` codes this picture (uint8 (H, W, C), C in {1, 3}) as strips: the grid model on the CPU,
    the picture at least ``config.split.min_pixels``, and its base storable (WebP lossless through Pillow)."""
    height, width = image.shape[:2]
    return (config.split.enabled and config.model == "grid" and on_cpu and len(strips(height, width, config.split)) > 1
            and lossless.available() and lossless.fits(width, height))


def proxy_bits(crop: np.ndarray, quality: int) -> float:
    """Bits of ``crop`` (uint8 (h, w, C)) as a baseline JPEG at ``quality`` (Pillow, 4:2:0 for colour) over those
    of a picture of one colour of its size: its detail's, without the JPEG's headers and empty blocks (at least
    one bit)."""
    def size(picture: np.ndarray) -> int:
        buf = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[2] == 1 else picture).save(buf, "JPEG", quality=quality)
        return len(buf.getvalue())

    flat = np.empty_like(crop)
    flat[...] = crop[0, 0]
    return max(1.0, 8.0 * (size(crop) - size(flat)))


def shares(image: np.ndarray, boxes: list[Box], cfg: SplitConfig) -> list[float]:
    """Each strip's share of the picture's bits (summing to 1): its JPEG proxy's share, each strip's rate held
    within ``cfg.max_ratio`` of the picture's mean rate (then renormalised)."""
    area = float(sum(b.area for b in boxes))
    raw = [proxy_bits(np.ascontiguousarray(image[b.y: b.y + b.h, b.x: b.x + b.w]), cfg.proxy_quality) for b in boxes]
    total = sum(raw)
    out = []
    for b, bits in zip(boxes, raw):
        rel = (bits / total) / (b.area / area)  # the strip's rate over the mean rate
        out.append(b.area / area * min(max(rel, 1.0 / cfg.max_ratio), cfg.max_ratio))
    s = sum(out)
    return [x / s for x in out]


def _fit_strip(crop: np.ndarray, config: CodecConfig, progress: Callable | None = None) -> bytes:
    """One strip's version-8 file, fitted in this process (``progress``: as ``codec.encode``'s)."""
    with compute_threads(config.fit.threads):
        return grid_codec.fit_and_code(crop, config, CPU, progress)[0]


def fit_steps(crop: np.ndarray, config: CodecConfig) -> int:
    """The fitting steps ``grid_codec.fit_and_code`` takes for this strip (uint8 (h, w, C)) on the CPU, but for a
    retry of the collapse guard."""
    return grid_codec.fit_plan(crop, config, CPU)[2].steps


# the phases a child reports on its pipe, by the name of its progress bar: each line is the phase's letter (none
# for the fit's steps) and a count; the other phases (the choices after the rounding, a trim) say nothing
_PHASE_LETTERS = {"fit": "", "rounding": "r"}


def _ticks(fd: int) -> Callable:
    """A child's progress factory: each step of its fit and each sweep of its rounding as a line on the pipe
    ``fd``."""
    out = os.fdopen(fd, "w", buffering=1)

    def make(name: str, total: int, unit: str = "step") -> Callable[[int, float], None]:
        letter = _PHASE_LETTERS.get(name)

        def update(n: int, loss: float) -> None:
            if letter is not None:
                out.write(f"{letter}{n}\n")
        return update

    return make


def _worker(ticks: int | None = None) -> None:
    """A child process's body: a pickled (crop, config) on stdin, the strip's file on stdout, its fitting steps
    as lines on the pipe ``ticks`` (a file descriptor) where given; a failure as one ``pranc: error:`` line on
    stderr, exit code the PrancError's (1 for anything else, 4 out of memory)."""
    try:
        crop, config = pickle.load(sys.stdin.buffer)
        data = _fit_strip(crop, config, None if ticks is None else _ticks(ticks))
    except PrancError as e:
        _child_fail(str(e), e.exit_code)
    except MemoryError:
        _child_fail("out of memory", LimitError.exit_code)
    except Exception as e:  # a bug: the parent says so in one line, as the CLI does
        _child_fail(f"{type(e).__name__}: {e}", 1)
    sys.stdout.buffer.write(data)


def _child_fail(message: str, code: int) -> None:
    print(f"pranc: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(code)


# a child's exit code -> the error the parent raises (PrancError's codes; anything else is a bug's)
_CHILD_ERRORS: dict[int, type[Exception]] = {InputError.exit_code: InputError, FormatError.exit_code: FormatError,
                                             LimitError.exit_code: LimitError}


def _read_ticks(fd: int, tick: Callable[[str, int], None]) -> None:
    """Read a child's progress from the pipe ``fd`` to its end, passing each line on to ``tick(phase, n)``; closes
    ``fd``."""
    phases = {letter: name for name, letter in _PHASE_LETTERS.items()}
    with os.fdopen(fd, "r") as pipe:
        for line in pipe:
            line = line.strip()
            letter, count = (line[:1], line[1:]) if line[:1].isalpha() else ("", line)
            if count.isdigit() and letter in phases:
                tick(phases[letter], int(count))


class _Children:
    """The strips' child processes: each fits one strip; whatever ends the encode early (an interrupt, another
    strip's failure) kills those still running, which a terminal's interrupt need not reach (a shell without job
    control starts them ignoring SIGINT)."""

    def __init__(self) -> None:
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def fit(self, crop: np.ndarray, config: CodecConfig, tick: Callable[[str, int], None] | None = None) -> bytes:
        """:func:`_fit_strip` in a child process of its own (a fresh interpreter: no fork of this one's thread
        pools, and nothing of the caller's ``__main__`` run again, as multiprocessing's spawn would).
        ``tick(phase, n)``: called as the child's fit takes n more steps ("fit") or its rounding n more sweeps
        ("rounding"), from a thread of its own."""
        env = {**CHILD_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        # the steps' own pipe (stdout carries the file, stderr the errors), where a child can inherit it
        read_end, write_end = os.pipe() if tick is not None and os.name == "posix" else (-1, -1)
        reader = None
        try:
            with self.lock:
                if self.stopping:
                    raise KeyboardInterrupt
                proc = subprocess.Popen(
                    [sys.executable, "-c", "from pranc_codec.split import _worker; "
                     + (f"_worker({write_end})" if write_end >= 0 else "_worker()")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                    pass_fds=(write_end,) if write_end >= 0 else ())
                self.live.add(proc)
            if write_end >= 0:
                os.close(write_end)
                write_end = -1
                reader = threading.Thread(target=_read_ticks, args=(read_end, tick), daemon=True)
                reader.start()
            try:
                out, err = proc.communicate(pickle.dumps((crop, config)))
            finally:
                with self.lock:
                    self.live.discard(proc)
        finally:
            if write_end >= 0:
                os.close(write_end)
            if reader is not None:
                reader.join()  # the child's end is closed: the reader has met the end of its pipe
            elif read_end >= 0:
                os.close(read_end)
        if proc.returncode == -signal.SIGKILL:  # most often the kernel's out-of-memory killer
            raise MemoryError("a strip's fit was killed (out of memory?)")
        if proc.returncode == -signal.SIGINT:
            raise KeyboardInterrupt
        if proc.returncode != 0:
            lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.startswith("pranc: error:")]
            why = lines[-1][len("pranc: error:"):].strip() if lines else f"exit code {proc.returncode}"
            raise _CHILD_ERRORS.get(proc.returncode, RuntimeError)(f"a strip's fit failed: {why}")
        return out

    def kill(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.live:
                proc.kill()


class Split(NamedTuple):
    """What :func:`encode` made."""

    data: bytes  # the composite file
    strips: int  # how many strips
    picture: np.ndarray  # uint8 (H, W, C): what the file decodes to (the seam filter's choice decoded it)


def encode(image: np.ndarray, budget_bytes: float, config: CodecConfig,
           region_config: Callable[[int, int, float], CodecConfig], workers: int | None = None,
           progress: Callable | None = None) -> Split:
    """The picture (uint8 (H, W, C)) as a composite file of its strips, of about ``budget_bytes`` bytes (each strip
    within its own rate's tolerance), with the number of strips and what the file decodes to (:class:`Split`).
    ``region_config(h, w, budget_bytes)``: the configuration a strip of h x w pixels is encoded with at that
    budget; its fit runs on one thread.
    ``workers``: child processes side by side (1: in this process, one strip after the other; None:
    :func:`workers_for` this machine's cores, or ``config.fit.threads`` where set, and free memory); the file is
    the same either way. ``progress``: as
    ``codec.encode``'s: in this process each strip's phases, side by side one bar of the strips' fitting steps,
    then one of their rounding's sweeps, then one of the strips finished (with more strips than workers, one bar
    of the whole in per cent)."""
    height, width, channels = image.shape
    boxes = strips(height, width, config.split, 8 * budget_bytes)
    base = np.empty_like(image)
    base[...] = image[0, 0]  # every pixel is covered by a strip: one colour costs the lossless coder nothing
    base_file = lossless.encode(base, config.lossless)
    left = budget_bytes - len(base_file) - composite_overhead(len(boxes))
    jobs = []
    whole_batch = batch_size(config.grid, height * width)
    for b, share in zip(boxes, shares(image, boxes, config.split)):
        cfg = region_config(b.h, b.w, left * share)
        if config.split.share_batch:  # the strip's area's share of the whole picture's batch, at any size
            part = max(1, round(whole_batch * b.area / (height * width)))
            cfg = replace(cfg, grid=replace(cfg.grid, batch_pixels=part, batch_ref_pixels=b.area))
        jobs.append((np.ascontiguousarray(image[b.y: b.y + b.h, b.x: b.x + b.w]),
                     replace(cfg, fit=replace(cfg.fit, threads=1))))
    files: list[bytes] = [b""] * len(jobs)
    if workers is None:
        workers = workers_for(boxes, config.fit.threads or available_cores(), available_memory())
    if config.time.limit is not None:  # a time budget: each round of strips side by side gets an equal share
        rounds = -(-len(jobs) // max(workers, 1))
        each = config.time.limit * config.time.strips_share / rounds
        jobs = [(crop, replace(cfg, time=replace(cfg.time, limit=each))) for crop, cfg in jobs]
    if workers <= 1:
        for i, (crop, cfg) in enumerate(jobs):
            files[i] = _fit_strip(crop, cfg, progress)
    else:
        bars = _Bars(progress, [(fit_steps(crop, cfg), cfg.rounding.sweeps) for crop, cfg in jobs],
                     together=workers >= len(jobs))
        children = _Children()
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            try:
                futures = {pool.submit(children.fit, crop, cfg, partial(bars.tick, i)): i
                           for i, (crop, cfg) in enumerate(jobs)}
                for fut in as_completed(futures):
                    files[futures[fut]] = fut.result()
                    bars.finished(futures[fut])
            except BaseException:
                children.kill()
                raise
    placed = [(b.x, b.y, f) for b, f in zip(boxes, files)]
    data = pack_composite(width, height, channels, base_file, placed)
    # the seams' filter at the strength that brings the decoded picture (its strips pasted) nearest the original
    seams = seam.vertical_seams([(b.x, b.y, b.w, b.h) for b in boxes])
    pasted = decode_file(data, threads=max(1, workers))
    strength = seam.choose(pasted, image, seams)
    if strength:
        data = pack_composite(width, height, channels, base_file, placed, strength)
    # the decoder's own steps (composite.decode: the strips pasted, then the seams filtered), not decoded again: a
    # 24-megapixel picture's decode takes 12-18 s
    return Split(data, len(boxes), seam.apply(pasted, seams, strength) if strength else pasted)


class _Bars:
    """The progress of strips fitted side by side, from the children's threads, as one bar at a time (a terminal
    shows one): their fitting steps together, then their rounding's sweeps together, then the strips finished
    (the choices after the rounding). A strip that starts a phase before the others have finished the one before
    has its count kept for that phase's bar. ``totals``: each strip's (fitting steps, rounding sweeps).

    With more strips than run at once (``together`` False: four strips on two cores), the later strips' fit
    starts only when an earlier strip is done, so a bar of all the fitting steps would stand still while the
    first ones round: then one bar of the whole, in per cent, each strip's phases weighted by their usual share
    of its time (``WEIGHTS``)."""

    PHASES = (("fit", "step"), ("rounding", "sweep"), ("strips", "strip"))
    INDEX = {name: p for p, (name, _) in enumerate(PHASES)}
    # a strip's time in its fit, its rounding and the rest: the first of a 3072 x 2048 picture's four at 0.25 bpp
    # took 32.8, 16.2 and 5.2 s (one thread; ABLATIONS.md BA3)
    WEIGHTS = (0.6, 0.3, 0.1)

    def __init__(self, progress: Callable | None, totals: list[tuple[int, int]], together: bool = True) -> None:
        self.progress, self.totals = progress, [(*t, 1) for t in totals]
        self.lock = threading.Lock()
        self.taken = [[0] * len(self.PHASES) for _ in totals]  # per strip, per phase
        self.phase, self.bar = -1, None
        self.together, self.shown = together, 0  # per cent shown, where not together
        with self.lock:
            if together:
                self._advance()
            elif progress is not None:
                self.bar = progress("strips", 100, "%")

    def tick(self, strip: int, phase: str, n: int) -> None:
        """Strip number ``strip`` took ``n`` more of ``phase`` ("fit": steps, "rounding": sweeps)."""
        with self.lock:
            self._take(strip, self.INDEX[phase], n)
            self._advance()

    def finished(self, strip: int) -> None:
        """Strip number ``strip``'s file is made: whatever of its phases went unreported is done."""
        with self.lock:
            for p in range(len(self.PHASES)):
                self._take(strip, p, self.totals[strip][p] - self.taken[strip][p])
            self._advance()

    def _take(self, strip: int, p: int, n: int) -> None:
        n = max(0, min(n, self.totals[strip][p] - self.taken[strip][p]))  # a retried fit's steps are not counted
        self.taken[strip][p] += n
        if n and p == self.phase and self.bar is not None:
            self.bar(n, float("nan"))

    def _advance(self) -> None:
        """Open the next phase's bar once every strip is through the current one (skipping empty phases); where
        the strips are not all run together, move the one bar to the per cent done."""
        if not self.together:
            self._move_whole()
            return

        def total(p: int) -> int:
            return sum(t[p] for t in self.totals)

        while self.phase + 1 < len(self.PHASES) and (
                self.phase < 0 or sum(t[self.phase] for t in self.taken) >= total(self.phase)):
            self.phase += 1
            if self.progress is None or not total(self.phase):
                self.bar = None
                continue
            name, unit = self.PHASES[self.phase]
            self.bar = self.progress(name, total(self.phase), unit)
            done = sum(t[self.phase] for t in self.taken)
            if done:
                self.bar(done, float("nan"))

    def _move_whole(self) -> None:
        """Move the one bar of the whole (strips not all run together) to the per cent done, never back."""
        done = sum(w * t[p] / total[p] for t, total in zip(self.taken, self.totals)
                   for p, w in enumerate(self.WEIGHTS) if total[p])
        whole = sum(sum(w for p, w in enumerate(self.WEIGHTS) if total[p]) for total in self.totals)
        finished = all(t == total for t, total in zip(self.taken, self.totals))
        now = 100 if finished else int(100 * done / whole + 1e-6)  # (two of four strips: 49.999...)
        if self.bar is not None and now > self.shown:
            self.bar(now - self.shown, float("nan"))
        self.shown = max(self.shown, now)


def workers_for(boxes: list[Box], cores: int, memory: float | None) -> int:
    """Child processes to fit the strips ``boxes`` on ``cores`` cores: one a core and at most one a strip, as many
    as ``memory`` (bytes free, None: unknown) holds at an encode's peak for the largest strip (``PEAK_BYTES``);
    1 (the strips one after the other, in this process: the same file) where it holds fewer than two."""
    workers = max(1, min(len(boxes), cores))
    if memory is not None and workers > 1:
        base, per_pixel = PEAK_BYTES["encode"]
        workers = max(1, min(workers, int(memory // (base + per_pixel * max(b.area for b in boxes)))))
    return workers
