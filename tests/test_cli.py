"""The command line: round trip, JSON output, and a clean one-line error for each bad input."""
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pranc_codec import bitstream
from pranc_codec.cli import main
from pranc_codec.config import CodecConfig

from .conftest import interruptible, smooth_image

FAST_ARGS = ["--model", "siren", "--steps", "120", "--threads", "1", "--bpp", "2", "-q"]


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.fixture()
def png(tmp_path):
    p = tmp_path / "img.png"
    Image.fromarray(smooth_image(40, 56, 3)).save(p)
    return p


@pytest.fixture()
def prc(tmp_path, png, runner):
    out = tmp_path / "img.prc"
    r = runner.invoke(main, ["encode", str(png), "-o", str(out), *FAST_ARGS])
    assert r.exit_code == 0, r.output
    return out


def _one_line_error(r, code=None):
    assert r.exit_code != 0
    if code is not None:
        assert r.exit_code == code
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("pranc: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_encode_decode_info_round_trip(runner, tmp_path, png, prc):
    out = tmp_path / "out.png"
    r = runner.invoke(main, ["decode", str(prc), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert (info["width"], info["height"], info["channels"]) == (56, 40, 3)
    assert np.asarray(Image.open(out)).shape == (40, 56, 3)
    r = runner.invoke(main, ["info", str(prc), "--json"])
    h = json.loads(r.output)
    assert h["bytes"] == prc.stat().st_size and h["basis"] == "orthogonal" and h["seed"] == 2023
    assert abs(h["bpp"] - 8 * prc.stat().st_size / (40 * 56)) < 1e-12


def test_encode_json_reports_decoder_psnr(runner, tmp_path, png):
    out = tmp_path / "j.prc"
    r = runner.invoke(main, ["encode", str(png), "-o", str(out), "--json", "--steps", "120", "--bpp", "2",
                             "--model", "siren", "--seed", "7", "--basis", "ternary"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["bytes"] == out.stat().st_size and s["rate_ok"]
    from pranc_codec import decode
    from pranc_codec.metrics import psnr
    assert psnr(np.asarray(Image.open(png)), decode(out.read_bytes())) == s["psnr"]


def test_default_model_is_the_latent_grid(runner, tmp_path, png):
    out = tmp_path / "g.prc"
    r = runner.invoke(main, ["encode", str(png), "-o", str(out), "--json", "--steps", "150", "--bpp", "3"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)  # a short fit on a tiny picture may warn about the rate on stderr
    assert s["model"] == "grid" and s["bytes"] == out.stat().st_size
    r = runner.invoke(main, ["info", str(out), "--json"])
    h = json.loads(r.output)
    assert (h["network"], h["width"], h["height"]) == ("grid", 56, 40)
    assert h["version"] == bitstream.GRID_VERSION
    assert h["latents"] == sum(-(-40 // 2**l) * -(-56 // 2**l) for l in range(h["levels"]))
    r = runner.invoke(main, ["decode", str(out), "-o", str(tmp_path / "g.png"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["channels"] == 3


def test_decode_threads_option_sets_the_thread_count_and_not_the_pixels(runner, tmp_path, prc):
    before = torch.get_num_threads()
    try:
        one, many = tmp_path / "one.png", tmp_path / "many.png"
        assert runner.invoke(main, ["decode", str(prc), "-o", str(one), "--threads", "1", "-q"]).exit_code == 0
        assert torch.get_num_threads() == 1
        assert runner.invoke(main, ["decode", str(prc), "-o", str(many), "--threads", "2", "-q"]).exit_code == 0
        assert torch.get_num_threads() == 2
        assert np.array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(many)))
    finally:
        torch.set_num_threads(before)


def test_siren_options_with_the_grid_model_are_refused(runner, tmp_path, png):
    line = _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "x.prc"), "--basis",
                                                "ternary"]), 2)
    assert "--basis only apply to --model siren" in line
    assert not (tmp_path / "x.prc").exists()


def test_tune_psnr_reaches_the_fit_and_only_applies_to_the_grid_model(runner, tmp_path, png, monkeypatch):
    """--tune psnr fits plain squared error (grid.structure_mix 0); balanced keeps the structure weights."""
    import pranc_codec.codec as codec
    from pranc_codec.config import GridConfig

    real, seen = codec.encode, []

    def spy(image, config, **kw):
        seen.append(config.grid.structure_mix)
        return real(image, config, **kw)

    monkeypatch.setattr(codec, "encode", spy)
    files = {}
    for tune in ("psnr", "balanced"):
        out = tmp_path / f"{tune}.prc"
        r = runner.invoke(main, ["encode", str(png), "-o", str(out), "--tune", tune, "--steps", "150", "--bpp", "3",
                                 "--threads", "1", "-q"])
        assert r.exit_code == 0, r.output
        files[tune] = out.read_bytes()
    assert seen == [0.0, GridConfig().structure_mix] and GridConfig().structure_mix > 0
    assert files["psnr"] != files["balanced"]
    line = _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "s.prc"), "--model", "siren",
                                                "--tune", "psnr"]), 2)
    assert "--tune only applies to --model grid" in line
    with pytest.raises(ValueError, match="unknown tune"):
        CodecConfig().with_tune("ssim")


def test_missing_input(runner, tmp_path):
    _one_line_error(runner.invoke(main, ["encode", str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.prc")]), 2)
    _one_line_error(runner.invoke(main, ["decode", str(tmp_path / "nope.prc")]), 2)
    _one_line_error(runner.invoke(main, ["info", str(tmp_path / "nope.prc")]), 2)


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_not_an_image(runner, tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    msg = _one_line_error(runner.invoke(main, ["encode", str(p), "-o", str(tmp_path / "x.prc")]), 2)
    assert "bad.png" in msg


def test_truncated_png(runner, tmp_path, png):
    p = tmp_path / "trunc.png"
    p.write_bytes(png.read_bytes()[:200])
    _one_line_error(runner.invoke(main, ["encode", str(p), "-o", str(tmp_path / "x.prc")]), 2)


def test_truncated_and_corrupt_prc(runner, tmp_path, prc):
    data = prc.read_bytes()
    t = tmp_path / "t.prc"
    t.write_bytes(data[: len(data) // 2])
    assert "CRC" in _one_line_error(runner.invoke(main, ["decode", str(t), "-o", str(tmp_path / "t.png")]), 3)
    c = tmp_path / "c.prc"
    c.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    _one_line_error(runner.invoke(main, ["decode", str(c), "-o", str(tmp_path / "c.png")]), 3)
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "c.png").exists()


def test_wrong_magic_and_version(runner, tmp_path, prc):
    data = prc.read_bytes()
    m = tmp_path / "m.prc"
    m.write_bytes(b"JUNK" + data[4:])
    assert "magic" in _one_line_error(runner.invoke(main, ["info", str(m)]), 3)
    v = bytearray(data)
    v[4] = 13
    body = bytes(v[:-4])
    (tmp_path / "v.prc").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    assert "version 13" in _one_line_error(runner.invoke(main, ["decode", str(tmp_path / "v.prc")]), 3)


def test_absurd_dimensions_refused(runner, tmp_path, prc):
    b = bytearray(prc.read_bytes())
    struct.pack_into("<HH", b, 6, 60000, 60000)
    body = bytes(b[:-4])
    (tmp_path / "big.prc").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    msg = _one_line_error(runner.invoke(main, ["decode", str(tmp_path / "big.prc")]), 4)
    assert "60000x60000" in msg


def test_a_directory_as_input_is_refused(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in ("encode", "decode", "info"):
        for name in (".", str(tmp_path)):  # "." has no name to derive an output from
            assert "is a directory" in _one_line_error(runner.invoke(main, [cmd, name]), 2)


def test_size_sets_the_target_in_bytes(runner, tmp_path, png):
    args = ["--model", "siren", "--steps", "120", "--threads", "1", "--json", "-o", str(tmp_path / "s.prc")]
    r = runner.invoke(main, ["encode", str(png), "--size", "0.7k", *args])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["target_bpp"] == 8 * 700 / (40 * 56)
    assert "give one of" in _one_line_error(runner.invoke(main, ["encode", str(png), "--size", "700", "--bpp", "1"]), 2)
    for bad in ("0", "-3", "20kk", "lots"):
        assert "--size" in _one_line_error(runner.invoke(main, ["encode", str(png), "--size", bad]), 2)


def test_info_shows_several_files_and_goes_on_past_a_bad_one(runner, tmp_path, prc):
    bad = tmp_path / "bad.prc"
    bad.write_bytes(b"PRNC\x07 and nothing else")
    r = runner.invoke(main, ["info", str(prc), str(bad), str(prc), "--json"])
    assert r.exit_code == 3
    shown = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["file"] for d in shown] == [str(prc)] * 2 and shown[0] == shown[1]
    assert r.stderr.startswith(f"pranc: error: {bad}: ") and r.stderr.count("\n") == 1
    r = runner.invoke(main, ["info", str(prc), str(prc)])
    assert r.exit_code == 0 and r.stdout.count(f"== {prc}") == 2


def test_info_text_is_a_short_aligned_line_a_field(runner, tmp_path, png):
    """A grid file's info listed its 60-odd entropy models and 21 context buckets on two lines of 2,000 and 60
    characters, and names longer than 16 characters broke the alignment: long lists are counted now (--json lists
    them), floats shown to six significant digits, the names aligned on the widest."""
    prc = tmp_path / "g.prc"
    r = runner.invoke(main, ["encode", str(png), "-o", str(prc), "--steps", "40", "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    text = runner.invoke(main, ["info", str(prc)]).output.splitlines()
    full = json.loads(runner.invoke(main, ["info", str(prc), "--json"]).output)
    assert len({ln.index(": ") for ln in text}) == 1 and max(len(ln) for ln in text) <= 100
    fields = dict((k.strip(), v) for k, v in (ln.split(": ", 1) for ln in text))
    assert fields["entropy_models"] == f"{len(full['entropy_models'])} (--json lists them)"
    assert len(full["entropy_models"]) > 8 and len(full["entropy_models"][0]) == 2
    assert fields["bpp"] == f"{full['bpp']:.6g}" and float(fields["bpp"]) == pytest.approx(full["bpp"], rel=1e-5)
    assert fields["mlp_steps"] == "[" + ", ".join(f"{x:.6g}" for x in full["mlp_steps"]) + "]"
    assert fields["width"] == "56" and fields["network"] == "grid"


def test_info_reads_headers_without_loading_torch(prc):
    """``info`` is the container alone (shapes.py, basis.py): torch takes ~2 s to import, a header a few ms."""
    grid = os.path.join(os.path.dirname(__file__), "data", "golden_v7_filter.prc")
    code = ("import sys\nfrom pranc_codec.cli import main\n"
            "try:\n    main(['info', '--json', sys.argv[1], sys.argv[2]])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch' in sys.modules, code)")
    r = subprocess.run([sys.executable, "-c", code, str(prc), grid], capture_output=True, text=True)
    *shown, last = r.stdout.splitlines()
    assert last == "False 0", r.stdout + r.stderr
    assert [json.loads(s)["network"] for s in shown] == ["siren", "grid"]
    assert json.loads(shown[1])["loop_filter"]["taps"] in (3, 5, 7)


def test_decoding_a_grid_file_does_not_load_torch(tmp_path):
    """A grid file decodes in numpy (grid_decode.py): torch's import alone takes 1.4-2 s."""
    grid = os.path.join(os.path.dirname(__file__), "data", "golden_v7_filter.prc")
    out = tmp_path / "g.png"
    code = ("import sys\nfrom pranc_codec.cli import main\n"
            "try:\n    main(['decode', sys.argv[1], '-o', sys.argv[2], '-q', '--threads', '1'])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('torch' in sys.modules, code)")
    r = subprocess.run([sys.executable, "-c", code, grid, str(out)], capture_output=True, text=True)
    assert r.stdout.splitlines()[-1] == "False 0", r.stdout + r.stderr
    from pranc_codec import decode
    assert np.array_equal(np.asarray(Image.open(out)), decode(open(grid, "rb").read()))


def test_output_directory_missing(runner, tmp_path, png, prc):
    _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(tmp_path / "no" / "x.prc"), *FAST_ARGS]), 2)
    _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "no" / "x.png")]), 2)


def test_existing_output_needs_force_and_input_is_never_overwritten(runner, tmp_path, png, prc):
    before = prc.read_bytes()
    out = tmp_path / "exists.png"
    out.write_bytes(b"keep me")
    assert "--force" in _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(out)]), 2)
    assert out.read_bytes() == b"keep me"
    assert runner.invoke(main, ["decode", str(prc), "-o", str(out), "--force", "-q"]).exit_code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(prc), "--force"]), 2)  # not an image suffix
    assert prc.read_bytes() == before
    disguised = tmp_path / "stream.png"  # a .prc named like the output format
    disguised.write_bytes(before)
    assert "input" in _one_line_error(runner.invoke(main, ["decode", str(disguised), "-o", str(disguised),
                                                           "--force"]), 2)
    assert disguised.read_bytes() == before
    png_before = png.read_bytes()
    _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(png), "--force", *FAST_ARGS]), 2)
    assert png.read_bytes() == png_before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_real_process_exit_code_and_no_traceback(tmp_path):
    p = tmp_path / "junk.prc"
    p.write_bytes(os.urandom(100))
    r = subprocess.run([sys.executable, "-m", "pranc_codec.cli", "decode", str(p)], capture_output=True, text=True)
    assert r.returncode == 3
    assert r.stderr.strip().startswith("pranc: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_help_does_not_load_torch_and_the_api_still_does():
    """`pranc --help` took 2 s, nearly all of it importing torch through the package's public API."""
    code = ("import sys; from click.testing import CliRunner; from pranc_codec.cli import main; "
            "r = CliRunner().invoke(main, ['encode', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--bpp' in r.output; print('torch' in sys.modules); "
            "import pranc_codec; pranc_codec.encode; print('torch' in sys.modules, pranc_codec.encode.__module__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "pranc_codec.codec"]
    import pranc_codec
    with pytest.raises(AttributeError):
        pranc_codec.no_such_name


def test_grayscale_and_alpha_inputs(runner, tmp_path):
    g = tmp_path / "g.png"
    Image.fromarray(smooth_image(30, 30, 1)[:, :, 0]).save(g)
    r = runner.invoke(main, ["encode", str(g), "-o", str(tmp_path / "g.prc"), *FAST_ARGS])
    assert r.exit_code == 0, r.output
    a = tmp_path / "a.png"
    rgba = np.concatenate([smooth_image(30, 30, 3), np.full((30, 30, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba).save(a)
    r = runner.invoke(main, ["encode", str(a), "-o", str(tmp_path / "a.prc"), "--steps", "50", "--bpp", "2"])
    assert r.exit_code == 0 and "alpha" not in r.stderr  # kept (format version 11), no warning
    r = runner.invoke(main, ["decode", str(tmp_path / "a.prc"), "-o", str(tmp_path / "a-out.png")])
    assert r.exit_code == 0
    with Image.open(tmp_path / "a-out.png") as im:
        assert im.mode == "RGBA" and (np.asarray(im)[:, :, 3] == 128).all()


def test_ctrl_c_during_encode_leaves_nothing(tmp_path, png):
    """SIGINT while fitting: exit 130, one line, no output and no temporary file."""
    import signal
    import threading
    import time

    out = tmp_path / "img.prc"
    proc = subprocess.Popen([sys.executable, "-m", "pranc_codec", "encode", str(png), "-o", str(out),
                             "--steps", "1000000", "--threads", "1"], stderr=subprocess.PIPE,
                             preexec_fn=interruptible)
    seen = bytearray()
    started = threading.Event()

    def pump():  # the progress bar on stderr tells us the fit has begun
        while chunk := proc.stderr.read1(4096):
            seen.extend(chunk)
            if b"fit:" in seen:  # tqdm's "fit: 0%|..." line: the fitting loop has begun
                started.set()
        started.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    assert started.wait(120), "encoder never started fitting"
    time.sleep(2.0)  # well inside the fitting loop
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(60)
    finally:  # a failed wait must not leave a million-step encode running beside the rest of the suite
        if proc.poll() is None:
            proc.kill()
    t.join(10)
    err = seen.decode(errors="replace")
    assert rc == 130, err
    assert "Traceback" not in err
    last = [s for s in err.replace("\r", "\n").splitlines() if s.strip()][-1]
    assert last == "pranc: error: interrupted; no output written"
    assert os.listdir(tmp_path) == [png.name]


def test_interrupt_inside_a_string_eval_still_exits_130(tmp_path):
    """CPython under `python -m` turns an exit into a SIGINT death (-2) when the
    KeyboardInterrupt was raised inside a string exec/eval, even if it was caught
    (seen once in CI: the interrupt landed in a lazily created namedtuple). The
    CLI's handler must still give exit code 130 and its one line."""
    (tmp_path / "interrupt_probe.py").write_text(
        "from pranc_codec.cli import _errors\n"
        "with _errors():\n"
        "    exec('raise KeyboardInterrupt')\n")
    r = subprocess.run([sys.executable, "-m", "interrupt_probe"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "pranc: error: interrupted; no output written"


def _pranc(*args, stdin: bytes = b"", **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pranc_codec", *args], input=stdin, capture_output=True, **kw)


def test_dash_reads_standard_input_and_writes_standard_output(tmp_path, png, prc):
    """`-` as INPUT or -o is a pipe: the same bytes as the files, the summary on stderr."""
    from pranc_codec.codec import decode as decode_bytes

    r = _pranc("encode", "-", "-o", "-", *FAST_ARGS[:-1], "--json", stdin=png.read_bytes())
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stderr.decode().strip().splitlines()[-1])
    assert summary["output"] == "-" and summary["bytes"] == len(r.stdout)
    assert r.stdout[:4] == b"PRNC" and decode_bytes(r.stdout).shape == (40, 56, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "img.prc"]  # nothing written beside them

    filed = tmp_path / "filed.png"
    assert _pranc("decode", str(prc), "-o", str(filed), "-q").returncode == 0
    r = _pranc("decode", "-", "-o", "-", stdin=prc.read_bytes())
    assert r.returncode == 0, r.stderr
    assert r.stdout == filed.read_bytes()
    assert r.stderr.decode().startswith("<stdout>: 56x40x3")
    r = _pranc("info", "-", "--json", stdin=prc.read_bytes())
    assert json.loads(r.stdout)["file"] == "<stdin>"


def test_standard_input_needs_a_named_output_and_a_terminal_gets_no_binary(tmp_path, prc):
    import pty

    for cmd in ("encode", "decode"):
        r = _pranc(cmd, "-", stdin=prc.read_bytes(), text=False)
        assert r.returncode == 2
        assert r.stderr.decode().strip() == "pranc: error: reading standard input: name the output with -o " \
                                            "(- for standard output)"
    png = tmp_path / "img.png"
    for args in (["decode", str(prc)], ["encode", str(png), "--steps", "100000"]):  # refused before the fit
        leader, follower = pty.openpty()
        try:
            r = subprocess.run([sys.executable, "-m", "pranc_codec", *args, "-o", "-"], stdout=follower,
                               stderr=subprocess.PIPE, timeout=120)
        finally:
            os.close(follower)
            os.close(leader)
        assert r.returncode == 2
        assert r.stderr.decode().strip() == "pranc: error: <stdout> is a terminal: redirect it to a file or a pipe"


def test_a_file_larger_than_any_prc_is_refused_before_it_is_read(tmp_path, runner):
    big = tmp_path / "big.prc"
    with big.open("wb") as f:
        f.truncate(bitstream.MAX_FILE_BYTES + 1)  # sparse: no disk, and reading it would take 1 GiB
    for cmd in ("decode", "info"):
        r = runner.invoke(main, [cmd, str(big)])
        line = _one_line_error(r, 4)
        assert "larger than any .prc file" in line


def test_decode_writes_the_lossless_format_its_suffix_names_and_refuses_lossy_ones(runner, tmp_path, prc):
    ref = tmp_path / "ref.png"
    assert runner.invoke(main, ["decode", str(prc), "-o", str(ref), "-q"]).exit_code == 0
    pixels = np.asarray(Image.open(ref))
    for name, fmt in (("a.bmp", "BMP"), ("a.ppm", "PPM"), ("a.TIFF", "TIFF"), ("a.tga", "TGA"), ("noext", "PNG"),
                      ("a.webp", "WEBP")):
        r = runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / name), "-q"])
        assert r.exit_code == 0, r.output
        with Image.open(tmp_path / name) as img:
            assert img.format == fmt
            np.testing.assert_array_equal(np.asarray(img), pixels)
    for name in ("a.jpg", "a.avif", "a.xyz"):
        line = _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / name)]), 2)
        assert "losslessly" in line and not (tmp_path / name).exists()


def test_an_internal_error_is_one_line_and_exit_70(runner, tmp_path, png, monkeypatch):
    """A bug (an exception that is not a PrancError) still ends in one line on stderr, exit code 70 and no
    output file; PRANC_DEBUG=1 lets it through with its traceback."""
    import pranc_codec.codec as codec

    def broken(image, config, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(codec, "encode", broken)
    out = tmp_path / "x.prc"
    line = _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(out), *FAST_ARGS]), 70)
    assert "internal error (RuntimeError: boom)" in line and "PRANC_DEBUG=1" in line
    assert not out.exists()
    monkeypatch.setenv("PRANC_DEBUG", "1")
    r = runner.invoke(main, ["encode", str(png), "-o", str(out), *FAST_ARGS])
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "boom"
    assert runner.invoke(main, ["encode", "--help"]).exit_code == 0  # click's own exits pass through
    # torch's dispatcher errors run to forty lines (torch 2.3's missing CPU kernel for fused Adam): the first, cut
    monkeypatch.delenv("PRANC_DEBUG")

    def dispatcher(image, config, **kw):
        raise NotImplementedError("Could not run 'aten::_fused_adam_' " + "x" * 400 + "\n\nCUDA: registered at ...")

    monkeypatch.setattr(codec, "encode", dispatcher)
    line = _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(out), *FAST_ARGS]), 70)
    assert "(NotImplementedError: Could not run 'aten::_fused_adam_' xxx" in line and "CUDA" not in line
    assert len(line) < 320 and "PRANC_DEBUG=1" in line


def test_a_reader_that_goes_away_ends_pranc_silently_as_sigpipe_would():
    """`pranc info x.prc | head -1`, `pranc decode x.prc -o - | head -c 10`: the reader closes the pipe before
    pranc writes; pranc stops with 141 and says nothing (it said "internal error (BrokenPipeError)")."""
    golden = str(Path(__file__).parent / "data" / "golden_v12.prc")
    for args in (["info", golden], ["decode", golden, "-o", "-"]):
        p = subprocess.Popen([sys.executable, "-m", "pranc_codec", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdout.close()  # gone before pranc has imported anything, let alone written
        err = p.stderr.read()
        assert p.wait(timeout=60) == 141 and err == b"", err


def test_encode_refuses_to_name_a_prc_stream_as_a_picture(tmp_path):
    """`pranc encode a.png -o small.png` wrote a .prc stream no viewer opens: refused before the fit, nothing
    written; a name without an image suffix is the user's choice."""
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    runner = CliRunner()
    for name in ("small.png", "small.JPG", "small.webp", "small.heic"):
        r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / name)])
        assert r.exit_code == 2 and "pranc encode writes a .prc file, not ." in r.output
        assert not (tmp_path / name).exists()
    r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "small.bin"), "--steps", "5", "-q"])
    assert r.exit_code == 0 and (tmp_path / "small.bin").read_bytes()[:4] == b"PRNC"


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, runner, png, prc, monkeypatch):
    """A missing directory in -o, a directory named with a trailing slash that does not exist, and the input as
    its own output under --force: refused before the fit (or the decode), not after it; `-o out/` wrote a file
    called out."""
    import pranc_codec.codec
    import pranc_codec.decoder

    def no_work(*args, **kwargs):
        raise AssertionError("the work ran before the output was checked")

    monkeypatch.setattr(pranc_codec.codec, "encode", no_work)
    monkeypatch.setattr(pranc_codec.decoder, "decode_parsed", no_work)
    for out, says in ((tmp_path / "missing" / "a.prc", "does not exist"),
                      (f"{tmp_path / 'out'}{os.sep}", "not an existing directory")):
        line = _one_line_error(runner.invoke(main, ["encode", str(png), "-o", str(out), *FAST_ARGS]), 2)
        assert says in line
        assert not (tmp_path / "out").exists() and not (tmp_path / "missing").exists()
    line = _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "missing" / "a.png")]), 2)
    assert "directory" in line and "does not exist" in line
    # a .prc file named like a picture decoded onto itself: refused by the check, the input kept
    disguised = tmp_path / "d.png"
    disguised.write_bytes(prc.read_bytes())
    line = _one_line_error(runner.invoke(main, ["decode", str(disguised), "-o", str(disguised), "-f"]), 2)
    assert "refusing to overwrite the input file" in line
    assert disguised.read_bytes() == prc.read_bytes()


def test_the_wrong_command_for_a_file_says_which_is_right(runner, tmp_path, png):
    """A picture given to decode or info, a .prc file given to encode: one line naming the command that reads it
    (exit 2, bad usage), where it was "not a .prc file (bad magic bytes)" (exit 3) or "not an image Pillow can
    read"."""
    prc = tmp_path / "a.prc"
    assert runner.invoke(main, ["encode", str(png), "-o", str(prc), *FAST_ARGS]).exit_code == 0
    line = _one_line_error(runner.invoke(main, ["encode", str(prc), "-o", str(tmp_path / "b.prc")]), 2)
    assert "a .prc file, not a picture (pranc decode reads it)" in line
    for cmd in (["decode", str(png), "-o", str(tmp_path / "c.png")], ["info", str(png)]):
        line = _one_line_error(runner.invoke(main, cmd), 2)
        assert "a PNG picture, not a .prc file (pranc encode compresses it)" in line
    junk = tmp_path / "junk.prc"
    junk.write_bytes(b"JUNK" * 40)
    assert "bad magic" in _one_line_error(runner.invoke(main, ["decode", str(junk)]), 3)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_and_exit_2_not_an_internal_error():
    """A disk that fills up under the output, the file named or a redirection of stdout: one line naming what
    could not be written (it was "internal error (OSError: [Errno 28] ...)", exit 70)."""
    golden = str(Path(__file__).parent / "data" / "golden_v12.prc")
    r = _pranc("decode", golden, "-o", "/dev/full")
    assert r.returncode == 2 and r.stderr.decode() == "pranc: error: /dev/full: cannot write (No space left on device)\n"
    for args in (["decode", golden, "-o", "-"], ["info", golden, "--json"], ["info", golden]):
        with open("/dev/full", "wb") as full:
            r = subprocess.run([sys.executable, "-m", "pranc_codec", *args], stdout=full, stderr=subprocess.PIPE)
        assert r.returncode == 2, args
        assert r.stderr.decode() == "pranc: error: <stdout>: cannot write (No space left on device)\n", args


def test_a_file_that_cannot_be_written_leaves_nothing_and_says_why(tmp_path, monkeypatch):
    import errno

    from pranc_codec.errors import InputError
    from pranc_codec.image_io import atomic_write

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(InputError, match=r"out.prc: cannot write \(No space left on device\)"):
        atomic_write(tmp_path / "out.prc", b"data")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_pipe_or_device_is_written_into_and_a_link_through(runner, tmp_path, prc):
    """-o /dev/null, a FIFO, /dev/stdout: written into without --force, never replaced by a file (with
    --force, os.replace turned them into regular files: /dev/null itself, as root). A link to a file is
    written through with --force, and stays a link."""
    import stat
    import threading

    expected = tmp_path / "expected.png"
    assert runner.invoke(main, ["decode", str(prc), "-o", str(expected), "-q"]).exit_code == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = runner.invoke(main, ["decode", str(prc), "-o", str(fifo), "-q"])
    reader.join(timeout=60)
    assert r.exit_code == 0, r.output
    assert got == [expected.read_bytes()] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    r = runner.invoke(main, ["decode", str(prc), "-o", os.devnull, "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)

    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert "already exists" in _one_line_error(runner.invoke(main, ["decode", str(prc), "-o", str(link)]), 2)
    assert runner.invoke(main, ["decode", str(prc), "-o", str(link), "-f", "-q"]).exit_code == 0
    assert link.is_symlink() and real.read_bytes() == expected.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.png", "img.png", "img.prc", "link.png", "pipe",
                                                         "real.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_pipe_as_input_is_read_once_and_needs_a_named_output(runner, tmp_path, png, prc):
    """`pranc encode <(cat a.png) -o a.prc`: the picture is read whole from the pipe (Pillow read its head,
    then could not seek: "not an image Pillow can read"); without -o there is no name to derive."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed(data: bytes) -> threading.Thread:
        t = threading.Thread(target=lambda: fifo.write_bytes(data), daemon=True)
        t.start()
        return t

    writer = feed(png.read_bytes())
    r = runner.invoke(main, ["encode", str(fifo), "-o", str(tmp_path / "piped.prc"), *FAST_ARGS])
    writer.join(timeout=60)
    assert r.exit_code == 0, r.output
    writer = feed(prc.read_bytes())
    r = runner.invoke(main, ["decode", str(fifo), "-o", str(tmp_path / "piped.png"), "-q"])
    writer.join(timeout=60)
    assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["decode", str(prc), "-o", str(tmp_path / "filed.png"), "-q"]).exit_code == 0
    assert (tmp_path / "piped.png").read_bytes() == (tmp_path / "filed.png").read_bytes()
    for cmd in ("encode", "decode"):
        assert "name the output with -o" in _one_line_error(runner.invoke(main, [cmd, str(fifo)]), 2)


def test_demo_codes_the_sample_photo(runner, tmp_path):
    """README's first command: ``pranc demo`` (with the fast preset) writes a ``.prc`` that decodes to the PNG it
    wrote beside it, at about the asked rate, and prints that decode's PSNR on one line, then JPEG's at the same
    size on another: the highest quality no larger than the ``.prc``, written beside it."""
    from pranc_codec import decode
    from pranc_codec.cli import demo_photo
    from pranc_codec.image_io import read_image
    from pranc_codec.metrics import psnr
    from pranc_codec.quality_target import jpeg_file

    out = tmp_path / "demo"
    r = runner.invoke(main, ["demo", "--preset", "fast", "--bpp", "0.25", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    photo = read_image(demo_photo())[0]
    original = np.asarray(Image.open(out / "grace_hopper_original.png"))
    decoded = np.asarray(Image.open(out / "grace_hopper_decoded.png"))
    assert np.array_equal(original, photo) and original.shape == (600, 512, 3)
    prc = out / "grace_hopper.prc"
    assert np.array_equal(decode(prc.read_bytes()), decoded)
    bpp = 8 * prc.stat().st_size / (600 * 512)
    assert 0.2 < bpp < 0.26
    quality = psnr(original, decoded)
    assert quality > 27.0
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and f"{bpp:.4f} bpp, PSNR {quality:.2f} dB" in lines[0], r.stdout
    jpg = (out / "grace_hopper_jpeg.jpg").read_bytes()
    q = int(lines[1].split("quality ")[1].split(",")[0])
    assert jpg == jpeg_file(photo, q) and len(jpg) <= prc.stat().st_size < len(jpeg_file(photo, q + 1))
    jpeg_db = psnr(photo, np.asarray(Image.open(out / "grace_hopper_jpeg.jpg")))
    assert f"{len(jpg)} bytes" in lines[1] and f"PSNR {jpeg_db:.2f} dB" in lines[1], r.stdout
    assert quality > jpeg_db + 1.5  # the codec's claim, on its own demo
    refused = tmp_path / "refused"
    _one_line_error(runner.invoke(main, ["demo", "--bpp", "0", "-q", "-o", str(refused)]), 2)
    assert not refused.exists()


def test_the_summary_of_a_budgeted_encode_counts_its_work_in_words():
    from pranc_codec.cli import _time_asked

    assert _time_asked({"time_limit": 12.0, "steps": 600, "sweeps": 1}) == \
        " of 12 s asked (600 fitting steps, 1 rounding sweep)"
    assert _time_asked({"time_limit": 20.0, "steps": 1500, "sweeps": 3}).endswith("(1500 fitting steps, 3 rounding sweeps)")
    assert _time_asked({"time_limit": 5.0, "steps": None}) == " of 5 s asked"
    assert _time_asked({"time_limit": None, "steps": 600, "sweeps": 1}) == ""


def test_the_readmes_python_example_runs_as_written():
    """README's Python API block, run as it stands on a small picture: each encode decodes to its picture's shape,
    and the second one's file is at its rate."""
    import re

    from pranc_codec import decode

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    scope = {"image_uint8_hwc": smooth_image(40, 56)}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["image"].shape == (40, 56, 3)
    assert decode(scope["result"].data).shape == (40, 56, 3)
    assert abs(scope["result"].stats.bpp / 0.5 - 1) < 0.25
