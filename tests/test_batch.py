"""Several files in one command (pranc_codec/batch.py): the bytes of single-file runs, errors per file, refusals
before any work, and an interrupt that leaves nothing behind."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pranc_codec import batch
from pranc_codec.cli import main
from pranc_codec.errors import InputError

from .conftest import interruptible, smooth_image

FAST_ARGS = ["--model", "siren", "--steps", "120", "--threads", "1", "--bpp", "2", "-q"]


@pytest.fixture()
def pictures(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i, (h, w) in enumerate([(40, 56), (32, 48), (24, 40)]):
        p = src / f"p{i}.png"
        Image.fromarray(smooth_image(h, w, 3, seed=i)).save(p)
        paths.append(p)
    return paths


def test_a_batch_writes_the_bytes_of_single_runs_and_reports_every_file(tmp_path, pictures):
    runner = CliRunner()
    single = tmp_path / "single"
    single.mkdir()
    for p in pictures:
        r = runner.invoke(main, ["encode", str(p), "-o", str(single / f"{p.stem}.prc"), *FAST_ARGS])
        assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(main, ["encode", *map(str, pictures), "-o", str(out), "--jobs", "2", "--json", *FAST_ARGS])
    assert r.exit_code == 0, r.output
    reports = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(d["input"] for d in reports) == sorted(map(str, pictures))
    for p in pictures:
        assert (out / f"{p.stem}.prc").read_bytes() == (single / f"{p.stem}.prc").read_bytes()
    # and back: decoded side by side into the same folder, the pixels of a single decode
    r = runner.invoke(main, ["decode", *(str(out / f"{p.stem}.prc") for p in pictures), "-o", str(out), "-j", "0"])
    assert r.exit_code == 0, r.output
    assert sorted(line.split("]")[0] for line in r.stdout.splitlines()) == ["[1/3", "[2/3", "[3/3"]
    for p in pictures:
        r = runner.invoke(main, ["decode", str(single / f"{p.stem}.prc"), "-o", str(single / f"{p.stem}.png"), "-q"])
        assert r.exit_code == 0, r.output
        assert np.array_equal(np.asarray(Image.open(out / f"{p.stem}.png")),
                              np.asarray(Image.open(single / f"{p.stem}.png")))


def test_a_batch_without_threads_makes_the_files_of_single_default_encodes(tmp_path, monkeypatch):
    """Without --threads, each child keeps the encoder's default (a fit on one thread) within its share of the
    cores, so a file is the one a single encode makes. Children that were handed the share as --threads ran their
    fits on it, and with -j 1 on two cores their files differed from a single encode's (ABLATIONS.md BL2)."""
    paths = []
    for i in (3, 4):
        paths.append(tmp_path / f"s{i}.png")
        Image.fromarray(smooth_image(48, 64, seed=i)).save(paths[-1])
    args = ["--steps", "200", "--bpp", "1", "-q"]
    runner = CliRunner()
    singles = []
    for p in paths:
        r = runner.invoke(main, ["encode", str(p), "-o", str(tmp_path / f"{p.stem}.prc"), *args])
        assert r.exit_code == 0, r.output
        singles.append((tmp_path / f"{p.stem}.prc").read_bytes())
    monkeypatch.setattr(batch, "available_cores", lambda: 2)  # the parent's count: two for the one child
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(main, ["encode", *map(str, paths), "-o", str(out), "-j", "1", *args])
    assert r.exit_code == 0, r.output
    assert [(out / f"{p.stem}.prc").read_bytes() for p in paths] == singles


def test_the_cores_counted_can_be_capped_by_the_environment(monkeypatch):
    monkeypatch.delenv(batch.CORES_ENV, raising=False)
    every = batch.available_cores()
    monkeypatch.setenv(batch.CORES_ENV, "1")
    assert batch.available_cores() == 1
    monkeypatch.setenv(batch.CORES_ENV, str(every + 5))  # a cap above the machine's cores changes nothing
    assert batch.available_cores() == every
    for bad in ("0", "-2", "two", ""):
        monkeypatch.setenv(batch.CORES_ENV, bad)
        assert batch.available_cores() == every


def test_a_bad_file_fails_alone_and_sets_the_exit_code(tmp_path, pictures):
    bad = pictures[0].parent / "bad.png"
    bad.write_bytes(pictures[0].read_bytes()[:200])
    r = CliRunner().invoke(main, ["encode", str(pictures[1]), str(bad), str(pictures[2]), "-j", "2", *FAST_ARGS])
    assert r.exit_code == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("pranc: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"pranc: error: {bad}: ") and "corrupt" in errors[0]
    assert "Traceback" not in r.stderr
    assert pictures[1].with_suffix(".prc").exists() and pictures[2].with_suffix(".prc").exists()
    assert not bad.with_suffix(".prc").exists()


def test_a_single_input_can_name_a_directory_to_write_into(tmp_path, pictures):
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(main, ["encode", str(pictures[0]), "-o", str(out), *FAST_ARGS])
    assert r.exit_code == 0, r.output
    assert (out / "p0.prc").exists()


def test_what_a_batch_refuses_before_any_work(tmp_path, pictures):
    runner = CliRunner()
    twin = pictures[0].with_suffix(".bmp")
    Image.open(pictures[0]).save(twin)

    def refused(args, words):
        r = runner.invoke(main, ["encode", *FAST_ARGS, *args])  # args last: they win over FAST_ARGS
        assert r.exit_code == 2, r.output
        assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr

    refused([str(pictures[0]), str(twin)], "would both be written to")
    refused([str(pictures[0]), "-"], "takes one file, not several")
    refused([str(pictures[0]), str(pictures[1]), "-o", str(tmp_path / "x.prc")], "not a directory")
    refused([str(pictures[0]), str(pictures[1]), "--bpp", "-1"], "--bpp must be a positive number")
    assert not list(tmp_path.rglob("*.prc"))
    with pytest.raises(InputError, match="would both be written to a.png"):  # a.prc would decode over a.png
        batch.plan(["a.prc", "a.png"], None, ".png")


def test_processes_and_threads_share_the_cores_and_the_memory(tmp_path, pictures):
    assert batch.workers_and_threads(1, 0, 5, 8) == (1, 8)
    assert batch.workers_and_threads(0, 0, 5, 8) == (5, 1)  # one per core, but no more than files
    assert batch.workers_and_threads(0, 0, 20, 8) == (8, 1)
    assert batch.workers_and_threads(3, 0, 20, 8) == (3, 2)
    assert batch.workers_and_threads(3, 4, 20, 8) == (3, 4)  # --threads as given
    assert batch.workers_and_threads(0, 0, 20, 8, 2e9, 7e9) == (3, 2)  # three 2 GB encodes fit in 7 GB
    assert batch.workers_and_threads(0, 0, 20, 8, 2e9, 1e9) == (1, 8)  # one at least
    assert batch.workers_and_threads(4, 0, 20, 8, 2e9, 1e9) == (4, 2)  # --jobs as given
    assert batch.workers_and_threads(0, 0, 20, 8, 2e9, None) == (8, 1)  # memory unknown
    assert batch.picture_pixels("encode", str(pictures[0])) == 40 * 56
    prc = tmp_path / "p.prc"
    r = CliRunner().invoke(main, ["encode", str(pictures[1]), "-o", str(prc), *FAST_ARGS])
    assert r.exit_code == 0, r.output
    assert batch.picture_pixels("decode", str(prc)) == 32 * 48
    assert batch.picture_pixels("encode", str(tmp_path / "missing.png")) == 0


def test_a_picture_too_large_for_the_free_memory_is_warned_about_before_the_work(tmp_path, pictures, monkeypatch):
    base, per_pixel = batch.PEAK_BYTES["encode"]
    need = base + per_pixel * 8192 ** 2  # the largest picture a file may hold: ~14 GB
    note = batch.memory_note("encode", 8192 ** 2, memory=int(need) - 1)
    assert note.startswith("this 67.1-megapixel picture needs about 14.3 GB to encode, and 14.3 GB is free")
    assert batch.memory_note("encode", 8192 ** 2, memory=int(need)) is None
    assert batch.memory_note("decode", 8192 ** 2, memory=int(need)) is None  # decoding needs less
    # the command line: one line on stderr before the encode (and the decode), the work still done
    prc, png = tmp_path / "p.prc", tmp_path / "p.png"
    monkeypatch.setattr(batch, "available_memory", lambda: 10 ** 8)  # 0.1 GB free
    r = CliRunner().invoke(main, ["encode", str(pictures[0]), "-o", str(prc), *FAST_ARGS])
    assert r.exit_code == 0 and prc.exists(), r.output
    warned = [line for line in r.stderr.splitlines() if "GB is free" in line]
    assert warned == ["pranc: warning: this 0.0-megapixel picture needs about 0.9 GB to encode, and 0.1 GB is free: "
                      "the system may stop pranc for lack of memory"]
    r = CliRunner().invoke(main, ["decode", str(prc), "-o", str(png), "-q"])
    assert r.exit_code == 0 and png.exists() and "0.6 GB to decode" in r.stderr
    monkeypatch.setattr(batch, "available_memory", lambda: 10 ** 10)
    r = CliRunner().invoke(main, ["decode", str(prc), "-o", str(png), "-q", "-f"])
    assert r.exit_code == 0 and "GB is free" not in r.stderr
    monkeypatch.setattr(batch, "available_memory", lambda: 10 ** 8)
    (tmp_path / "bad.prc").write_bytes(b"PRNC\x08" + bytes(40))  # no warning for a file that does not decode
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "bad.prc"), "-o", str(tmp_path / "bad.png")])
    assert r.exit_code != 0 and "GB is free" not in r.stderr and r.stderr.startswith("pranc: error:")


def test_an_interrupted_batch_stops_its_children_and_leaves_no_files(tmp_path, pictures):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-m", "pranc_codec", "encode", *map(str, pictures), "-o", str(out), "-j",
                          "2", "--model", "siren", "--steps", "1000000", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=interruptible)
    time.sleep(6)  # the children are fitting (or still importing: either way they must stop)
    p.send_signal(signal.SIGINT)  # the parent alone, as `kill -INT` would: it passes the interrupt on
    try:
        _, err = p.communicate(timeout=60)
    finally:  # a failed wait must not leave the batch running beside the rest of the suite
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert err.strip().splitlines()[-1] == "pranc: error: interrupted; 0 of 3 files written", err
    assert os.listdir(out) == []
    if os.path.isdir("/proc"):  # and no child is left fitting
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    alive += [pid] if str(out).encode() in f.read() else []
            except OSError:
                pass
        assert alive == []


def test_a_child_killed_by_a_signal_is_reported_as_such(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nkill -9 $$\n")  # as the kernel's out-of-memory killer would
    fake.chmod(0o755)
    monkeypatch.setattr(batch.sys, "executable", str(fake))
    seen = []
    out = batch.run("encode", [batch.Job("a.png", "a.prc")], [], 1, lambda done, o: seen.append((done, o)))
    assert [o.code for o in out] == [137] and seen == [(1, out[0])]
    assert out[0].error == "killed by SIGKILL (out of memory?)" and out[0].summary is None


def test_a_batch_passes_the_metadata_choice_to_every_file(tmp_path):
    """Each file of a batch is the single-file command's: a PNG's text chunk kept by default, dropped with
    --metadata none."""
    from PIL import PngImagePlugin

    from pranc_codec import read_metadata

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "a test")
    pics = []
    for i in range(2):
        pics.append(tmp_path / f"t{i}.png")
        Image.fromarray(smooth_image(24, 32, 3, seed=i)).save(pics[-1], pnginfo=info)
    runner = CliRunner()
    for choice, kept in (("all", (("Author", "a test"),)), ("none", None)):
        out = tmp_path / choice
        out.mkdir()
        r = runner.invoke(main, ["encode", *map(str, pics), "-o", str(out), "--metadata", choice, *FAST_ARGS])
        assert r.exit_code == 0, r.output
        for p in pics:
            assert read_metadata((out / f"{p.stem}.prc").read_bytes()).text == kept
