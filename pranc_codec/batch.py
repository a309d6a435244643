"""Several files in one command: ``pranc encode *.png --jobs 4``, ``pranc decode *.prc -o out/``.

Each file is coded by a child process running the single-file command
(``python -m pranc_codec encode IN -o OUT ... --json``), so a batch has every
guarantee of one file: the same bytes, the same one-line errors, atomic
outputs, an interrupt that leaves nothing half-written. One encode uses
several cores poorly (two threads run a step 1.27x as fast as one, ABLATIONS.md
AE3), so files side by side with one thread each are the fast way to code a
folder; the parent only schedules and reports. It imports neither torch nor
the codec, so it costs nothing next to a fit.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError

STDIO = "-"  # standard input or output, as in image_io (not imported: it pulls in torch)
# How long an interrupted child gets to clean up (it removes its temporary output) before it is killed.
INTERRUPT_GRACE_S = 10.0


@dataclass(frozen=True)
class Job:
    """One file of a batch: where it is read and where its result goes."""

    input: str
    output: str


@dataclass(frozen=True)
class Outcome:
    """What one child reported: its exit code, its JSON summary (None on failure), its warnings and its error
    (the message without the ``pranc: error:`` prefix; None on success)."""

    job: Job
    code: int
    summary: dict | None
    warnings: list[str]
    error: str | None


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or links to) an existing pipe, character device or socket: read whole once, and
    written into where a file would be replaced (replacing ``/dev/null`` with a regular file, as root, would
    break the system)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def output_for(input: str, output: str | None, suffix: str) -> str:
    """Where one input's result goes: ``output`` itself, inside ``output`` when it is an existing directory,
    else the input with ``suffix``. An ``output`` ending in a slash that is not a directory is refused."""
    if input == STDIO:
        if not output:
            raise InputError("reading standard input: name the output with -o (- for standard output)")
        return output
    if Path(input).is_dir():  # before deriving a name: "." or "/" has none
        raise InputError(f"{input}: is a directory")
    if not output and is_stream(input):  # a pipe (`<(cat a.png)`: /dev/fd/63) has no name to derive one from
        raise InputError(f"{input}: reading a pipe: name the output with -o (- for standard output)")
    if output and output != STDIO and Path(output).is_dir():
        return str(Path(output) / Path(input).with_suffix(suffix).name)
    if output and output.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        # `-o out/` names a directory: Path would drop the slash and write a file called out
        raise InputError(f"{output}: not an existing directory")
    return output or str(Path(input).with_suffix(suffix))


def plan(inputs: list[str], output: str | None, suffix: str) -> list[Job]:
    """The jobs of a batch of several inputs; ``output``, if given, must be an existing directory.

    Refused before any work: standard input or output, a directory as input, and two inputs whose results
    would have the same name (``a.png`` and ``a.jpg``; also ``a.prc`` and ``a.png`` for decode, which would
    replace an input: a child refuses to write over its own input).
    """
    if STDIO in inputs or output == STDIO:
        raise InputError("standard input or output (-) takes one file, not several")
    if output and not Path(output).is_dir():
        raise InputError(f"{output}: not a directory (with several inputs, -o names an existing directory)")
    jobs = [Job(i, output_for(i, output, suffix)) for i in inputs]
    seen: dict[Path, str] = {}
    for j in jobs:
        key = Path(os.path.abspath(j.output))
        if key in seen:
            raise InputError(f"{seen[key]} and {j.input} would both be written to {j.output}")
        seen[key] = j.input
    return jobs


# The cores a process may count on, where set (a positive integer): a batch gives each child its share of the
# machine this way, so that the child's own default (a fit on one thread, a large picture's strips on every core
# it has) applies within that share, and its file is the one a single encode makes (ABLATIONS.md BL2).
CORES_ENV = "PRANC_CORES"


def available_cores() -> int:
    """Every core this process may run on, at most ``$PRANC_CORES`` where that is set."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    cap = os.environ.get(CORES_ENV, "")
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores


@contextlib.contextmanager
def compute_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads and the BLAS libraries' loaded before the block (numpy's OpenBLAS) set to ``count``
    inside it, each put back as it was after it. (scipy's, which an encode may load for ``ndimage``, keeps its own:
    the encoder makes no BLAS calls through it.)

    BLAS too, because numpy's OpenBLAS otherwise runs a thread on every core: the encoder's numpy work after the
    fit (the MLP's GPTQ rounding in each rounding refit and in the choice of its bit depth, the decode that
    measures the file) then fought for a core wherever another process ran on the other one, such as a second
    encode: two encodes side by side took 1.4 x as long after the fit as one alone, and as long as one alone
    with BLAS on one thread (ABLATIONS.md BP2)."""
    import torch  # here: the batch runner itself never needs torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with threadpool_limits(limits=count, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


# What one child needs at its peak, to size --jobs 0 by the memory free: an encode of a Kodak picture (0.39 MP)
# peaks at 0.84-0.96 GB (0.5 of it torch itself), one of 3072 x 2048 (6.3 MP) at 1.9 GB (ABLATIONS.md AC, AD):
# about 0.17 GB a megapixel more, rounded up. `pranc decode` of a whole grid file (one network, no strips) of
# 12.6 MP peaks at 0.43 GB, of 67 MP (the pixel limit) at 1.71 GB (1.96 before ABLATIONS.md BT4), of a camera's
# 24 MP in eight strips at 0.56 GB (BT3): 30 bytes a pixel, over torch's 0.5 GB for a SIREN file's base.
PEAK_BYTES = {"encode": (0.9e9, 200.0), "decode": (0.6e9, 30.0)}  # (base, per pixel)


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_note(command: str, pixels: int, memory: int | None = None) -> str | None:
    """A warning when one ``command`` ("encode" or "decode") of a picture of ``pixels`` would peak above the
    memory free (``memory`` bytes; None: this machine's :func:`available_memory`), else None. A warning, not a
    refusal: the estimate is rough (``PEAK_BYTES``) and MemAvailable leaves out swap, but a process killed for
    memory prints nothing, minutes into an encode."""
    memory = available_memory() if memory is None else memory
    base, per_pixel = PEAK_BYTES[command]
    peak = base + per_pixel * pixels
    if memory is None or peak <= memory:
        return None
    return (f"this {pixels / 1e6:.1f}-megapixel picture needs about {peak / 1e9:.1f} GB to {command}, and "
            f"{memory / 1e9:.1f} GB is free: the system may stop pranc for lack of memory")


def picture_pixels(command: str, path: str) -> int:
    """Pixels of an input, read from its header only (an image's, or a .prc's width and height at bytes 6-9);
    0 where it cannot be read (its child will say why)."""
    try:
        if command == "decode":
            with open(path, "rb") as f:
                head = f.read(10)
            return int.from_bytes(head[6:8], "little") * int.from_bytes(head[8:10], "little")
        from PIL import Image

        with Image.open(path) as img:
            return img.size[0] * img.size[1]
    except Exception:  # noqa: BLE001 - any unreadable input: the child reports it properly
        return 0


def workers_and_threads(jobs: int, threads: int, files: int, cores: int, peak: float = 0.0,
                        memory: float | None = None) -> tuple[int, int]:
    """Processes side by side and the CPU threads each takes. ``jobs`` > 0 is taken as given; 0 is one per core,
    no more than ``memory`` (bytes free, None: unknown) holds at ``peak`` bytes each. Never more processes than
    files; ``threads`` 0 shares the cores out among them."""
    workers = jobs or cores
    if not jobs and memory is not None and peak > 0:
        workers = min(workers, int(memory // peak))
    workers = max(1, min(workers, files))
    return workers, threads or max(1, cores // workers)


def schedule(command: str, jobs: list[Job], workers: int, threads: int) -> tuple[int, int]:
    """:func:`workers_and_threads` on this machine: its cores, and with ``workers`` 0 its free memory at the
    peak of the largest input (``PEAK_BYTES``)."""
    peak = 0.0
    if not workers:
        base, per_pixel = PEAK_BYTES[command]
        peak = base + per_pixel * max(picture_pixels(command, j.input) for j in jobs)
    return workers_and_threads(workers, threads, len(jobs), available_cores(), peak, available_memory())


# the children import this very package, installed or not (bin/pranc runs from a checkout)
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parent.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _strip(line: str, prefix: str, input: str) -> str:
    msg = line[len(prefix):].strip()
    return msg[len(input) + 2:] if msg.startswith(f"{input}: ") else msg  # the caller names the file itself


def _run_one(command: str, job: Job, args: list[str], env: dict[str, str], live: set[subprocess.Popen],
             lock: threading.Lock, stopping: threading.Event) -> Outcome:
    """Run the single-file command for ``job`` in a child process (environment ``env``) and read what it reports."""
    cmd = [sys.executable, "-m", "pranc_codec", command, job.input, "-o", job.output, *args, "--json"]
    with lock:
        if stopping.is_set():
            return Outcome(job, 130, None, [], "interrupted")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        live.add(proc)
    try:
        out, err = proc.communicate()
    finally:
        with lock:
            live.discard(proc)
    warns = [_strip(ln, "pranc: warning:", job.input) for ln in err.splitlines() if ln.startswith("pranc: warning:")]
    errors = [_strip(ln, "pranc: error:", job.input) for ln in err.splitlines() if ln.startswith("pranc: error:")]
    summary = None
    if proc.returncode == 0:
        try:
            summary = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return Outcome(job, 1, None, warns, "no summary from the encoder")
    if proc.returncode != 0 and not errors:  # killed, or a failure that printed no error line
        code = proc.returncode
        if code in (130, -signal.SIGINT):
            errors = ["interrupted"]
        elif code < 0:  # SIGKILL is most often the kernel's out-of-memory killer
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            errors = [f"killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")]
        else:
            errors = [f"failed (exit code {code})"]
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Outcome(job, code, summary, warns, errors[0] if errors else None)


def run(command: str, jobs: list[Job], args: list[str], workers: int,
        report: Callable[[int, Outcome], None], cores: int | None = None) -> list[Outcome]:
    """Run ``command`` (``encode`` or ``decode``) over ``jobs``, ``workers`` at a time, each child with the
    extra command-line ``args`` and, if given, ``cores`` as its :func:`available_cores`; ``report(done,
    outcome)`` is called as each file ends, in the order they end. Returns the outcomes in the jobs' order.

    On KeyboardInterrupt no new file starts; the children still running get SIGINT (as from a terminal) and
    are waited for, so that each removes its temporary output, then the interrupt is raised again.
    """
    live: set[subprocess.Popen] = set()
    lock = threading.Lock()
    stopping = threading.Event()
    results: dict[int, Outcome] = {}
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        env = CHILD_ENV if cores is None else {**CHILD_ENV, CORES_ENV: str(cores)}
        futures: list[Future] = [pool.submit(_run_one, command, j, args, env, live, lock, stopping) for j in jobs]
        index = {f: i for i, f in enumerate(futures)}
        for done, f in enumerate(as_completed(futures), 1):
            results[index[f]] = f.result()
            report(done, results[index[f]])
    except KeyboardInterrupt:
        with lock:
            stopping.set()
            procs = list(live)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                p.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(jobs))]
