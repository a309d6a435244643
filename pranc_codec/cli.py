"""The ``pranc`` command: a thin layer over :mod:`pranc_codec.codec`.

Every user error ends in one line on stderr and a non-zero exit code
(2: bad input or usage, 3: corrupt .prc, 4: over a limit, 130: interrupted).
"""
from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import click

from . import batch
from .batch import STDIO, output_for
from .config import LOSSLESS_MODES, TUNES, GridConfig
from .errors import InputError, PrancError, require_positive

if TYPE_CHECKING:  # the container's classes load with it, only where a command reads a file
    from .bitstream import AlphaHeader, CompositeHeader, GridHeader, Header, LosslessHeader, MetadataHeader


DEBUG_ENV = "PRANC_DEBUG"  # set: an internal error shows its traceback
SIGPIPE_EXIT = 128 + 13  # the exit code a shell reports for a process SIGPIPE ended
_STARTED = time.perf_counter()  # when the command began (main sets it; a --time budget counts from here)
_BARS: list = []  # live progress bars, closed before an error so it starts on its own line


def _fail(msg: str, code: int) -> None:
    for bar in _BARS:
        bar.close()
    _BARS.clear()
    click.echo(f"pranc: error: {msg}", err=True)
    sys.exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map every expected failure to one line and an exit code."""
    try:
        yield
    except PrancError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt as e:
        # Under `python -m`, CPython ends the process by SIGINT instead of with our exit
        # code when the interrupt surfaced inside a string exec/eval (a lazily created
        # namedtuple, say): Py_RunMain checks a flag that run_eval_code_obj sets. Every
        # string eval clears that flag first, so one harmless eval restores exit 130.
        eval("0")
        _fail(str(e) or "interrupted; no output written", 130)  # a batch says how many files it wrote
    except MemoryError:
        _fail("out of memory", 4)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # click's own (usage errors, --help's exit): click prints them (Exit and Abort are RuntimeErrors)
    except BrokenPipeError:
        # whoever read standard output has gone (`pranc info x.prc | head -3`): stop silently, as a tool that
        # SIGPIPE ends does, with its code; what is left to flush goes nowhere, or Python would complain at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(SIGPIPE_EXIT)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            _internal(e)
        # files convert their own (image_io.atomic_write): this is a summary or report on a redirected stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _fail(f"<stdout>: cannot write ({e.strerror})", 2)
    except Exception as e:
        _internal(e)


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write's failures, never a bug's


INTERNAL_TEXT = 200  # characters of an internal error's message shown (torch's run to pages)


def _internal(e: Exception) -> None:
    """A bug, not bad input: still one line, and no partial output (writes are atomic). The exception's message
    is cut to its first line and ``INTERNAL_TEXT`` characters: torch's dispatcher errors list every backend on
    a line each, which made the "one line" forty."""
    if os.environ.get(DEBUG_ENV):
        raise e
    text = (str(e).strip().splitlines() or [""])[0]
    if len(text) > INTERNAL_TEXT:
        text = text[:INTERNAL_TEXT] + "..."
    _fail(f"internal error ({type(e).__name__}: {text}); please report it, {DEBUG_ENV}=1 shows where", 70)


def _protected(input: str) -> tuple[str, ...]:
    """The files an output must not replace: the input, unless it came from standard input."""
    return () if input == STDIO else (input,)


def _display_name(path: str, *, output: bool = False) -> str:
    """How messages name a path: ``<stdin>`` / ``<stdout>`` for ``-``."""
    return ("<stdout>" if output else "<stdin>") if path == STDIO else path


def _progress_factory(quiet: bool):
    """Progress bars on stderr (tqdm) unless quiet."""
    if quiet:
        return None
    from tqdm import tqdm

    bars = _BARS

    def make(name: str, total: int, unit: str = "step"):
        for b in bars:
            b.close()
        bars.clear()
        bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
        bars.append(bar)

        def update(n: int, loss: float) -> None:
            bar.update(n)
            if math.isfinite(loss):
                bar.set_postfix(psnr=f"{-10 * math.log10(max(loss, 1e-12)):.2f}dB")
            if bar.n >= bar.total:
                bar.close()

        def retotal(total: int) -> None:  # a time budget cut the work short (grid_fit.fit_grid)
            bar.total = total
            bar.refresh()

        update.retotal = retotal
        return update

    return make


def _jobs_option(what: str):
    return click.option("-j", "--jobs", type=click.IntRange(0), default=0,
                        help=f"With several inputs: files {what} side by side, each in its own process (default 0: "
                             "one per core, as many as the free memory holds); without --threads each keeps the "
                             "single-file defaults within its share of the cores.")


def _run_batch(command: str, inputs: list[str], output: str | None, suffix: str, args: list[str], jobs: int,
               threads: int, quiet: bool, as_json: bool, line: Callable[[str, dict], str]) -> None:
    """Run the single-file ``command`` over several inputs (:mod:`pranc_codec.batch`) and report each file as
    it ends: its summary (``line``) or JSON object on stdout, its warnings and error on stderr. Exits with the
    first failed file's code (in input order) after the others are done."""
    plan = batch.plan(inputs, output, suffix)
    workers, per = batch.schedule(command, plan, jobs, threads)
    n = len(plan)
    written = 0
    progress = _progress_factory(quiet or as_json)  # a bar over the files (each child is quiet)
    tick = progress(f"{command} ({workers} at a time)", n, unit="file") if progress else None

    def say(text: str, err: bool = False) -> None:
        if tick is None:
            click.echo(text, err=err)
        else:  # above the bar, which is redrawn under it
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr if err else sys.stdout)

    def report(done: int, o: batch.Outcome) -> None:
        nonlocal written
        for w in o.warnings:
            say(f"pranc: warning: {o.job.input}: {w}", err=True)
        if o.error is not None:
            say(f"pranc: error: {o.job.input}: {o.error}", err=True)
        else:
            written += 1
            if as_json:
                click.echo(json.dumps(o.summary))
            elif not quiet:
                say(f"[{done}/{n}] {line(o.job.output, o.summary)}")
        if tick is not None:
            tick(1, math.nan)

    try:
        # without --threads each child keeps its own default within its share of the cores (a fit on one
        # thread: the file a single encode makes); --threads N is passed on as given
        outcomes = batch.run(command, plan, [*args, "--threads", str(threads)], workers, report,
                             cores=None if threads else per)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; {written} of {n} files written") from None
    failed = [o for o in outcomes if o.code]
    if failed:
        if not quiet:
            click.echo(f"pranc: {len(failed)} of {n} files failed", err=True)
        sys.exit(failed[0].code)


_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000 ** 2}


def _parse_size(text: str, option: str = "--size") -> int:
    """``--size``, ``--max-size``: a positive number of bytes, optionally with a k (1000) or M (10^6) suffix (also
    kB, MB)."""
    t = text.strip().lower().removesuffix("b")
    unit = t[-1:] if t[-1:] in ("k", "m") else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _SIZE_UNITS[unit]
    except ValueError:
        raise InputError(f"{option} {text!r}: give bytes, e.g. 20000, 20k or 1.5M") from None
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"{option} {text!r}: must be at least one byte")
    return round(value)


_SECOND_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _parse_seconds(text: str, option: str = "--time") -> float:
    """``--time``: a positive number of seconds, optionally with a unit s, m (or min) or h, e.g. 45, 45s, 1.5m."""
    t = text.strip().lower()
    number = t.rstrip("minsh")
    unit = t[len(number):]
    try:
        value = float(number) * _SECOND_UNITS[unit]
    except (KeyError, ValueError):
        raise InputError(f"{option} {text!r}: give seconds, e.g. 45, 45s or 1.5m") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{option} {text!r}: must be more than zero seconds")
    return value


def _encode_line(out: str, s: dict) -> str:
    """The one-line summary of an encode (``s``: EncodeStats.to_dict())."""
    ms = f"{s['ms_ssim']:.4f}" if s["ms_ssim"] is not None else "n/a"
    what = "latents and weights" if s["model"] == "grid" else "coefficients"
    if s["lossless"]:
        quality = "lossless (the exact pixels, as WebP lossless)"
    elif s["model"] == "palette":
        quality = f"PSNR {s['psnr']:.2f} dB, MS-SSIM {ms}, the picture reduced to a palette (as WebP lossless)"
    elif s["model"] == "composite" and s.get("strips"):
        quality = f"PSNR {s['psnr']:.2f} dB, MS-SSIM {ms}, fitted as {s['strips']} strips side by side"
    elif s["model"] == "composite":
        quality = f"PSNR {s['psnr']:.2f} dB, MS-SSIM {ms}, the screen exact and its photographs fitted"
    else:
        quality = f"PSNR {s['psnr']:.2f} dB, MS-SSIM {ms}, {s['num_coefs']} {what}"
    if s.get("alpha_bytes"):
        how = "exact" if s["alpha_psnr"] is None else f"at {s['alpha_psnr']:.1f} dB"
        quality += f", the transparency {how} in {s['alpha_bytes']} bytes"
    if s.get("metadata_bytes"):
        quality += f", metadata in {s['metadata_bytes']} bytes"
    return (f"{_display_name(out, output=True)}: {s['bytes']} bytes, {s['bpp']:.4f} bpp, {quality}, "
            f"{s['encode_seconds']:.1f} s"
            + (f" ({s['passes']} encodes for {s['target_psnr']:g} dB)" if s.get("target_psnr") is not None else "")
            + _time_asked(s)
            + (f", at most {s['max_bytes']} bytes" if s.get("max_bytes") is not None else ""))


def _time_asked(s: dict) -> str:
    """The summary's words on a time budget (``--time``; empty without one): the seconds asked and, for one
    network's file, the fitting steps and rounding sweeps it took."""
    if s.get("time_limit") is None:
        return ""
    work = ""
    if s.get("steps"):
        work = f" ({s['steps']} fitting steps, {s['sweeps']} rounding sweep{'s' * (s['sweeps'] != 1)})"
    return f" of {s['time_limit']:g} s asked{work}"


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1]))) if items else ""


def _decode_line(out: str, s: dict) -> str:
    """The one-line summary of a decode (``s``: decode's JSON fields)."""
    from .metadata import label  # decode has loaded it (numpy): not at import, which --help pays for

    names = [label(k) for k in s.get("metadata", [])]
    kept = f", with its {_and(names)}" if names else ""
    return (f"{_display_name(out, output=True)}: {s['width']}x{s['height']}x{s['channels']}, {s['bpp']:.4f} bpp"
            f"{kept}, {s['decode_seconds']:.2f} s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pranc-codec")
def main() -> None:
    """pranc: compress images into .prc files with seeded random-basis neural networks."""
    global _STARTED
    _STARTED = time.perf_counter()


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(),
              help="Output .prc (default: INPUT with .prc suffix; - for standard output), or a directory to "
                   "write into (with several inputs, only that).")
@click.option("--bpp", type=float, default=None,
              help="Target bits per pixel (default 0.25); the file lands within ±10%.")
@click.option("--size", "size", type=str, default=None,
              help="Target file size instead of --bpp: bytes, or with a suffix k (1000) or M (10^6), e.g. 20k; "
                   "each file of a batch gets that size.")
@click.option("--max-size", "max_size", type=str, default=None,
              help="A ceiling on each file's size (bytes, k or M as for --size): the file is never larger. "
                   "Alone it is also the target; with --bpp, --size or --psnr, that target within it.")
@click.option("--psnr", "psnr_db", type=float, default=None,
              help="Target PSNR in dB instead of a rate: the encoder searches for the rate that reaches it, "
                   "within 0.2 dB, in at most 3 whole encodes (2.25 on average on Kodak).")
@click.option("--preset", type=click.Choice(["fast", "default", "slow"]), default="default", show_default=True,
              help="Trade encode time for quality.")
@click.option("--time", "time_limit", type=str, default=None, metavar="SECONDS",
              help="Finish each picture within this time (e.g. 20, 20s, 1.5m; from the command's start): the fit's "
                   "steps and the rounding's sweeps are cut to it as timed while encoding, never more than the "
                   "preset's; the file then depends on the machine's speed. Below what the fewest steps take, a "
                   "warning.")
@click.option("--tune", type=click.Choice(list(TUNES)), default="balanced", show_default=True,
              help="What the fit aims at: balanced (PSNR and MS-SSIM) or psnr (plain squared error: more PSNR, "
                   "less MS-SSIM).")
@click.option("--lossless", type=click.Choice(LOSSLESS_MODES), default="auto", show_default=True,
              help="auto: store the exact pixels (WebP lossless, format v9) where that file is no larger than the "
                   "rate asked for, as on most screenshots, charts and diagrams, and on such a picture of few "
                   "colours, its palette where that beats the network; never: always fit a network; always: always "
                   "the exact pixels (with --max-size at most, but no other target).")
@click.option("--alpha", "alpha_mode", type=click.Choice(["auto", "exact"]), default="auto", show_default=True,
              help="A picture with transparency keeps its alpha channel (format v11). auto: exact where the colour "
                   "is stored exactly, else reduced to the fewest levels that keep it within 50 dB PSNR (at most "
                   "a few levels of 255 off, on edges); exact: always exact.")
@click.option("--metadata", "metadata_kinds", default="all", show_default=True,
              metavar="all|none|icc,exif,xmp,text",
              help="What the file keeps besides the pixels: the ICC colour profile (other than sRGB's; without it "
                   "the pixels are converted to sRGB), EXIF (without its thumbnail), XMP, text (a PNG's text "
                   "chunks, a JPEG's comment). Their bytes come out of the rate.")
@click.option("--model", type=click.Choice(["grid", "siren"]), default="grid", show_default=True,
              help="grid: latent grids + small MLP (format v8); siren: the PRANC random-basis SIREN (format v3).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Basis seed (stored in the header).")
@click.option("--width", "net_width", type=click.IntRange(1, 1024), default=None,
              help="Hidden width of the network (default: derived from --bpp).")
@click.option("--layers", type=click.IntRange(1, 8), default=None, help="Number of sin() layers.")
@click.option("--basis", type=click.Choice(["orthogonal", "gaussian", "ternary", "identity"]), default=None,
              help="Basis kind (default orthogonal); identity stores the weights directly (baseline).")
@click.option("--expansion", type=float, default=None, help="Network parameters per coefficient.")
@click.option("--steps", type=click.IntRange(0), default=None,
              help=f"Fitting steps (overrides the preset). Grid fits below {GridConfig.finest_min_bpp:g} bpp of "
                   f"latents ({GridConfig.finest_min_bpp_flat:g} for screenshots, charts and other synthetic "
                   f"pictures of {GridConfig.finest_flat_min_pixels} pixels or more fitted with "
                   f"{GridConfig.finest_flat_min_steps} steps or more) "
                   f"leave the finest level out and, on the CPU, run {GridConfig.coarse_step_factor:g}x as "
                   "many at the same cost.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0,
              help="CPU threads (0 = a fit on one thread, a large picture's strips side by side on every core).")
@_jobs_option("encoded")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (one a file).")
def encode(inputs: tuple[str, ...], output: str | None, bpp: float | None, size: str | None,
           max_size: str | None, psnr_db: float | None, preset: str, time_limit: str | None,
           tune: str, lossless: str, alpha_mode: str, metadata_kinds: str, model: str,
           seed: int | None, net_width: int | None, layers: int | None, basis: str | None,
           expansion: float | None, steps: int | None, device: str, threads: int, jobs: int, force: bool,
           quiet: bool, as_json: bool) -> None:
    """Compress image files into .prc files (INPUT or -o may be -: standard input or output)."""
    with _errors():
        siren_only = {"--seed": seed, "--width": net_width, "--layers": layers, "--basis": basis,
                      "--expansion": expansion}
        given = [k for k, v in siren_only.items() if v is not None]
        if model == "grid" and given:
            raise InputError(f"{', '.join(given)} only apply to --model siren")
        if model == "siren" and tune != "balanced":
            raise InputError("--tune only applies to --model grid")
        if bpp is not None:
            require_positive(bpp, "--bpp")
        targets = [k for k, v in {"--bpp": bpp, "--size": size, "--psnr": psnr_db}.items() if v is not None]
        if len(targets) > 1:
            raise InputError(f"give one of --bpp, --size and --psnr, not {' and '.join(targets)}")
        if lossless == "always" and targets:
            raise InputError(f"--lossless always takes no {targets[0]}: the file is as large as the pixels need")
        if psnr_db is not None:
            require_positive(psnr_db, "--psnr", " of dB")
        seconds = _parse_seconds(time_limit) if time_limit is not None else None
        if seconds is not None and model != "grid":
            raise InputError("--time only applies to --model grid")
        from .metadata import parse_kinds

        try:
            keep = parse_kinds(metadata_kinds)
        except ValueError as e:
            raise InputError(f"--metadata: {e}") from None
        target_bytes = _parse_size(size) if size is not None else None
        max_bytes = _parse_size(max_size, "--max-size") if max_size is not None else None
        if max_bytes is not None and model != "grid":
            raise InputError("--max-size only applies to --model grid")
        if max_bytes is not None and not targets:
            target_bytes = max_bytes  # the ceiling alone is the target too (the encode aims just under it)
        if len(inputs) > 1:
            passed = {"--bpp": bpp, "--size": size, "--max-size": max_size, "--psnr": psnr_db, "--steps": steps,
                      "--time": time_limit, **siren_only}
            args = [a for k, v in passed.items() if v is not None for a in (k, str(v))]
            args += ["--preset", preset, "--tune", tune, "--lossless", lossless, "--alpha", alpha_mode,
                     "--metadata", metadata_kinds, "--model", model, "--device", device, "-q"]
            _run_batch("encode", list(inputs), output, ".prc", args + ["-f"] * force, jobs, threads, quiet,
                       as_json, _encode_line)
            return
        input = inputs[0]
        from .codec import encode as encode_image
        from .config import BasisKind, CodecConfig
        from .image_io import check_output, check_prc_name, read_picture, write_output

        out = output_for(input, output, ".prc")
        check_prc_name(out)
        check_output(out, force, _protected(input))  # fail before minutes of fitting, not after
        image, notes, meta = read_picture(input, keep_alpha=True, keep=keep)
        cfg = CodecConfig().with_preset(preset).with_tune(tune)
        if target_bytes is not None:  # the rate control works in bits per pixel of this picture
            bpp = 8 * target_bytes / (image.shape[0] * image.shape[1])
        if bpp is not None:
            cfg = replace(cfg, rate=replace(cfg.rate, bpp=bpp))
        if max_bytes is not None:
            cfg = replace(cfg, rate=replace(cfg.rate, max_bytes=max_bytes))
        if seed is not None:
            cfg = replace(cfg, seed=seed)
        if layers is not None:
            cfg = replace(cfg, network=replace(cfg.network, hidden_layers=layers))
        if basis is not None:
            cfg = replace(cfg, basis=replace(cfg.basis, kind=BasisKind[basis.upper()]))
        if expansion is not None:
            cfg = replace(cfg, basis=replace(cfg.basis, expansion=expansion))
        if steps is not None:
            cfg = replace(cfg, fit=replace(cfg.fit, steps=steps), grid=replace(cfg.grid, steps=steps))
        if alpha_mode == "exact":
            cfg = replace(cfg, alpha=replace(cfg.alpha, min_db=math.inf))
        cfg = replace(cfg, model=model, device=device, width=net_width, lossless=replace(cfg.lossless, mode=lossless),
                      fit=replace(cfg.fit, threads=threads))
        if seconds is not None:  # counted from the command's start: reading the picture is in it
            cfg = replace(cfg, time=replace(cfg.time, limit=seconds, spent=time.perf_counter() - _STARTED))
        note = batch.memory_note("encode", image.shape[0] * image.shape[1])
        for n in notes + ([note] if note else []):
            click.echo(f"pranc: warning: {n}", err=True)
        progress = _progress_factory(quiet or as_json)
        if psnr_db is not None:
            from .quality_target import encode_to_psnr
            result = encode_to_psnr(image, psnr_db, cfg, progress=progress, metadata=meta)
        else:
            result = encode_image(image, cfg, progress=progress, metadata=meta)
        write_output(out, result.data, force=force, protect=_protected(input))
        s = result.stats
        for n in s.warnings:
            click.echo(f"pranc: warning: {n}", err=True)
        report = out == STDIO  # the file is on stdout: the summary goes to stderr
        if as_json:
            click.echo(json.dumps({"input": str(input), "output": out, **s.to_dict()}), err=report)
        elif not quiet:
            click.echo(_encode_line(out, s.to_dict()), err=report)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(),
              help="Output image (default: INPUT with .png suffix; - for standard output, as PNG), or a directory "
                   "to write PNGs into (with several inputs, only that). The suffix picks a lossless format: "
                   ".png, .ppm/.pgm/.pnm, .bmp, .tif/.tiff, .tga or .webp (WebP lossless).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0,
              help="CPU threads (0 = all cores); 1 when decoding several files side by side.")
@_jobs_option("decoded")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No summary (warnings and errors still go to stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object (one a file).")
def decode(inputs: tuple[str, ...], output: str | None, device: str, threads: int, jobs: int, force: bool,
           quiet: bool, as_json: bool) -> None:
    """Decode .prc files into images (INPUT or -o may be -: standard input or output)."""
    with _errors():
        if len(inputs) > 1:
            args = ["--device", device, "-q"] + ["-f"] * force
            _run_batch("decode", list(inputs), output, ".png", args, jobs, threads, quiet, as_json, _decode_line)
            return
        input = inputs[0]
        if "numpy" not in sys.modules:
            # decode_parsed holds numpy's BLAS to one thread (the cores go to strips of rows, `decoder.py`);
            # set before numpy loads, OpenBLAS does not even start a thread on every core.
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = "1"
        from .decoder import decode_parsed
        from .image_io import (check_alpha_format, check_output, check_output_size, image_file, output_format,
                               read_bytes, write_output)

        t0 = time.perf_counter()
        out = output_for(input, output, ".png")
        check_output(out, force, _protected(input))
        fmt = output_format(out)
        data = read_bytes(input)
        from .bitstream import AlphaHeader, Header, MetadataHeader, parse

        header, payload = parse(data)  # checked first: no warning for a file that does not decode
        meta = None
        if isinstance(header, MetadataHeader):
            meta, header, payload = header.metadata, header.picture, header.picture_payload
        if isinstance(header, AlphaHeader):
            check_alpha_format(out, fmt)
        check_output_size(out, fmt, header.width, header.height)
        note = batch.memory_note("decode", header.num_pixels)
        if note:
            click.echo(f"pranc: warning: {note}", err=True)
        threads = threads or batch.available_cores()
        if isinstance(header.colour if isinstance(header, AlphaHeader) else header, Header):
            # the SIREN's network runs in torch (grid and lossless files need none)
            import torch

            torch.set_num_threads(threads)
        image = decode_parsed(header, payload, device=device, threads=threads)
        picture, notes, written = image_file(image, fmt, meta)
        for n in notes:
            click.echo(f"pranc: warning: {n}", err=True)
        write_output(out, picture, force=force, protect=_protected(input))
        seconds = time.perf_counter() - t0
        h, w, c = image.shape
        report = out == STDIO  # the picture is on stdout: the summary goes to stderr
        summary = {"input": input, "output": out, "width": w, "height": h, "channels": c,
                   "bpp": 8 * len(data) / (w * h),
                   "metadata": written,  # what the output holds
                   "decode_seconds": seconds}
        if as_json:
            click.echo(json.dumps(summary), err=report)
        elif not quiet:
            click.echo(_decode_line(out, summary), err=report)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print each header as one JSON object (a line a file).")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Show the header of .prc files (- reads standard input)."""
    with _errors():
        if len(inputs) == 1:
            _print_fields(_info_fields(inputs[0]), as_json)
            return
        failed = 0
        for input in inputs:
            try:
                fields = _info_fields(input)
            except PrancError as e:  # the other files are still shown; the exit code is the first failure's
                click.echo(f"pranc: error: {input}: {e}", err=True)
                failed = failed or e.exit_code
                continue
            if not as_json:
                click.echo(f"== {input}")
            _print_fields(fields, as_json)
    if failed:
        sys.exit(failed)


def _info_fields(input: str) -> dict:
    """The header fields of one .prc file, for ``info``."""
    # the container alone: no torch to load (shapes.py), so a header prints in a fraction of a second
    from .bitstream import parse
    from .image_io import read_bytes

    data = read_bytes(input)
    h, payload = parse(data)
    return {"file": _display_name(input), "bytes": len(data), "bpp": 8 * len(data) / h.num_pixels,
            "version": data[4], "width": h.width, "height": h.height, "channels": h.channels,
            **_header_fields(h, payload)}


def _header_fields(h: Header | GridHeader | LosslessHeader | CompositeHeader | AlphaHeader | MetadataHeader,
                   payload: bytes) -> dict:
    """The fields of a parsed header (``bitstream.parse``) past the picture's size, for ``info``."""
    from .bitstream import AlphaHeader, CompositeHeader, GridHeader, LosslessHeader, MetadataHeader

    if isinstance(h, MetadataHeader):
        from .metadata import profile_name

        m = h.metadata
        kept = {f"{k}_bytes": n for k, n in m.sizes().items()}
        if m.icc:
            kept["icc_profile"] = profile_name(m.icc) or "unreadable"
        if m.text:
            kept["text_entries"] = len(m.text)
            kept["text_keywords"] = [k for k, _ in m.text]
        return {"metadata": kept, **_header_fields(h.picture, h.picture_payload)}

    if isinstance(h, AlphaHeader):
        return {"alpha": "webp lossless", "alpha_reduced": h.alpha.palette, "alpha_payload_bytes": len(h.alpha_payload),
                "colour": {"channels": h.colour.channels, **_header_fields(h.colour, h.colour_payload)}}
    if isinstance(h, LosslessHeader):
        return {"network": "none", "lossless": "webp", "palette": h.palette, "payload_bytes": len(payload)}
    if isinstance(h, CompositeHeader):
        return {"network": "grid, in regions", "base": "webp lossless", "base_bytes": len(h.base_payload),
                "seam_filter": h.seam,  # the strength of the filter across the seams between regions (seam.py)
                "regions": [{"x": r.x, "y": r.y, "width": r.header.width, "height": r.header.height,
                             "latents": r.header.shape.num_latents(r.header.height, r.header.width),
                             "payload_bytes": len(r.payload)} for r in h.regions]}
    if isinstance(h, GridHeader):
        g = h.shape
        fields = {
            "network": "grid",
            "levels": g.levels, "latents": g.num_latents(h.height, h.width), "mlp_width": g.hidden,
            "mlp_layers": g.hidden_layers, "num_params": g.num_params, "mlp_steps": list(h.mlp_steps),
            "entropy_models": [{"decay": m.decay, "bound": m.bound} for m in h.level_models + h.mlp_models],
        }
        if h.buckets:  # versions 5-8: context buckets of every (level, pass), finest level first
            fields["context_buckets"] = list(h.buckets)
        if h.filter_taps:  # versions 6-8
            fields["loop_filter"] = {"taps": h.filter_taps, "symmetric": h.filter_symmetric,
                                     "shift": h.filter_shift, "coefficients": h.filter_coefs}
        return fields
    spec = h.spec
    return {
        "seed": spec.seed,
        "network": "siren", "hidden_layers": spec.shape.hidden_layers, "net_width": spec.shape.width,
        "omega0": spec.shape.omega0, "num_params": spec.shape.num_params,
        "basis": spec.kind.name.lower(), "chunk_size": spec.chunk_size,
        "expansion": spec.expansion_fp / 256, "ternary_density": spec.density_byte / 256,
        "offset": spec.offset, "num_coefs": spec.num_coefs, "delta": h.delta, "step_shifts": list(h.shifts),
        "entropy_models": [{"decay": m.decay, "bound": m.bound} for m in h.models],
    }


INFO_LIST_ITEMS = 8  # a longer list (a grid file's 60-odd entropy models) is counted in info's text, listed in --json


def _print_fields(fields: dict, as_json: bool) -> None:
    """One file's fields: one JSON object, or a line a field with the names aligned on the widest."""
    if as_json:
        click.echo(json.dumps(fields))
        return
    lines = [(k, _text_value(v)) for k, v in _flat(fields)]
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k:>{width}}: {v}")


def _text_value(v: object) -> str:
    """A field's value as info's text shows it: floats to six significant digits, a long list as its count."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        # (a short list of records never comes here: _flat gives each of them a line)
        if len(v) > INFO_LIST_ITEMS or any(isinstance(x, dict) for x in v):
            return f"{len(v)} (--json lists them)"
        return "[" + ", ".join(_text_value(x) for x in v) + "]"
    return str(v)


def _flat(fields: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """The fields, a nested record's as ``parent.name`` (a version-11 file's colour file, a loop filter) and a
    short list of records' as ``name[i]`` (a composite file's regions): a line each in ``info``'s text, where JSON
    keeps the nesting."""
    for k, v in fields.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and len(v) <= INFO_LIST_ITEMS and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):  # a composite file's regions: a line each
                yield f"{prefix}{k}[{i}]", ", ".join(f"{n}={_text_value(y)}" for n, y in x.items())
        else:
            yield f"{prefix}{k}", v


def demo_photo() -> Path:
    """The demo's picture: ``grace_hopper.jpg`` (512 x 600), which ships with matplotlib's sample data."""
    import matplotlib.cbook

    return Path(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


@main.command()
@click.option("-o", "--outdir", type=click.Path(file_okay=False), default="pranc-demo", show_default=True)
@click.option("--bpp", type=float, default=0.25, show_default=True)
@click.option("--preset", type=click.Choice(["fast", "default", "slow"]), default="default", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; only the two result lines.")
def demo(outdir: str, bpp: float, preset: str, quiet: bool) -> None:
    """Encode and decode a sample photo that ships with matplotlib; print bpp and PSNR, and JPEG's PSNR at the
    same size."""
    with _errors():
        from .codec import decode as decode_bytes, encode as encode_image
        from .config import CodecConfig
        from .image_io import atomic_write, image_bytes, read_image
        from .metrics import psnr
        from .quality_target import jpeg_decoded, jpeg_within

        src = demo_photo()
        image, _ = read_image(src)
        d = Path(outdir)
        cfg = CodecConfig().with_preset(preset)
        cfg = replace(cfg, rate=replace(cfg.rate, bpp=bpp))
        if not quiet:
            click.echo(f"encoding {src.name} ({image.shape[1]}x{image.shape[0]}) at {bpp} bpp ...")
        result = encode_image(image, cfg, progress=_progress_factory(quiet))
        d.mkdir(parents=True, exist_ok=True)  # only now: a refused setting (--bpp 0) leaves no empty folder behind
        atomic_write(d / "grace_hopper.prc", result.data, force=True)
        t0 = time.perf_counter()
        decoded = decode_bytes(result.data)
        dt = time.perf_counter() - t0
        atomic_write(d / "grace_hopper_decoded.png", image_bytes(decoded), force=True)
        atomic_write(d / "grace_hopper_original.png", image_bytes(image), force=True)
        s = result.stats
        click.echo(f"{d / 'grace_hopper.prc'}: {s.bytes} bytes, {s.bpp:.4f} bpp, PSNR {psnr(image, decoded):.2f} dB, "
                   f"encode {s.encode_seconds:.1f} s, decode {dt:.2f} s")
        # the peer a user knows, at the same size: the largest JPEG (Pillow's defaults) no larger than the .prc
        jpeg = jpeg_within(image, s.bytes)
        if jpeg is None:
            click.echo(f"JPEG: even quality 1 takes more than {s.bytes} bytes")
            return
        quality, data = jpeg
        atomic_write(d / "grace_hopper_jpeg.jpg", data, force=True)
        click.echo(f"{d / 'grace_hopper_jpeg.jpg'}: {len(data)} bytes, {8 * len(data) / image[..., 0].size:.4f} bpp, "
                   f"PSNR {psnr(image, jpeg_decoded(data, image)):.2f} dB (JPEG at quality {quality}, "
                   f"the largest no larger)")


# the rate–distortion harness (pranc_codec.evaluation), also installed as rd-eval
from .evaluation.cli import eval_command  # noqa: E402

main.add_command(eval_command)

if __name__ == "__main__":
    main()
