"""Reading images into 8-bit arrays, writing decoded pictures (lossless formats), and atomic file output.

The path ``-`` means standard input when reading and standard output when
writing, as in most command-line codecs (cjpeg, cwebp, ImageMagick).

Input policy (also in docs/usage.md, "Inputs"):
- any format Pillow reads, and HEIF/HEIC (an iPhone's photos) through pillow-heif where it is installed (the
  ``heif`` extra; a clear error where it is not); EXIF orientation is applied (the picture is coded as
  it is meant to be seen);
- 8-bit RGB is coded as 3 channels, grayscale (L, I;16, I, F) as 1 channel;
  16-bit and float grayscale are scaled to 8 bits;
- palette, CMYK, YCbCr, LAB, ... are converted to RGB;
- an ICC profile other than sRGB's, EXIF, XMP and text are kept where asked (``read_picture``'s ``keep``: the
  encoder's input; the pixels then stay in the profile's space); else an RGB or CMYK picture with a profile
  other than sRGB is converted to sRGB (a CMYK picture always is);
- an alpha channel that is not fully opaque is kept (``keep_alpha``: the encoder's input; C is then 2 or 4,
  alpha last), or else dropped with a warning; a fully opaque one is dropped;
- of an animation or a multi-page file, the first frame is coded, with a warning.
"""
from __future__ import annotations

import io
import os
import re
import stat
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Collection

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .batch import is_stream
from .bitstream import MAGIC as PRC_MAGIC
from .bitstream import MAX_FILE_BYTES
from .errors import InputError, LimitError
from .metadata import (PROFILE_ERRORS, Metadata, drop_thumbnail, profile_name, save_options, srgb_from, text_of,
                       to_srgb)

Image.MAX_IMAGE_PIXELS = 8192 * 8192  # decompression-bomb guard (Pillow raises above 2x this)

STDIO = "-"  # the path that names standard input or output
# An image piped in is read whole before Pillow sees it; 1 GiB holds an uncompressed 8192 x 8192 RGBA
# picture at 16 bits a sample (512 MB), the largest the pixel limit lets through.
MAX_STDIN_IMAGE_BYTES = 1 << 30
_CHUNK = 1 << 20
# major brands of an ISO-BMFF file (bytes 8-12, after "ftyp") that are HEIF stills and sequences, which Pillow does
# not read; AVIF's ("avif", "avis") it does
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
# pictures' suffixes that Pillow registers only with a plugin loaded (pillow-heif, a JPEG XL plugin)
PLUGIN_SUFFIXES = (".heic", ".heif", ".jxl")


def _read_limited(stream, limit: int, name: str, what: str) -> bytes:
    """All of ``stream`` in 1 MiB chunks, refused once it passes ``limit`` bytes: never read past it, and never a
    buffer of ``limit`` bytes allocated up front (``read(n)`` allocates n). Works on pipes, whose size is unknown."""
    buf = bytearray()
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise LimitError(f"{name}: more than {limit} bytes, larger than any {what} pranc reads")


def _read_stdin(limit: int, what: str) -> bytes:
    """All of standard input (refused when it is a terminal), at most ``limit`` bytes."""
    stream = sys.stdin.buffer
    if stream.isatty():
        raise InputError(f"<stdin> is a terminal: pipe {what} into it")
    return _read_limited(stream, limit, "<stdin>", what)


def to_array(img: Image.Image, keep_alpha: bool = False,
             keep: Collection[str] = ()) -> tuple[np.ndarray, list[str], Metadata]:
    """PIL image -> uint8 (H, W, C) with C in {1, 3}, or with ``keep_alpha`` and an alpha channel that is not
    fully opaque, {2, 4} with the alpha last; warnings for the user; and the metadata of the kinds in ``keep``
    (of ``metadata.KINDS``) the image holds. An ICC profile other than sRGB's is kept where ``keep`` names it
    (the pixels are then left in its space), else an RGB or CMYK picture is converted to sRGB."""
    notes: list[str] = []
    frames = getattr(img, "n_frames", 1)  # animated GIF / PNG / WebP, multi-page TIFF
    if frames > 1:
        notes.append(f"{frames} frames: only the first is coded")
    icc = img.info.get("icc_profile")
    text = text_of(img) if "text" in keep else ()  # before the transform, whose copy has no PNG chunks
    try:
        img = ImageOps.exif_transpose(img)  # also takes the orientation out of the EXIF and XMP it keeps
        exif = img.info.get("exif") or None
    except Exception as e:  # noqa: BLE001 (Pillow failing on a corrupt EXIF: the picture is still there)
        if not raised_by_pillow(e):
            raise
        notes.append(f"its EXIF is corrupt ({type(e).__name__}: {e}): orientation not applied, EXIF not kept")
        exif = None
    # the thumbnail cut only from an EXIF that is kept
    found = {"exif": drop_thumbnail(exif) if exif and "exif" in keep else None, "xmp": img.info.get("xmp") or None,
             "text": text or None}
    if isinstance(found["xmp"], str):
        found["xmp"] = found["xmp"].encode("utf-8")
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    alpha = None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if mode in ("RGBa", "La"):  # premultiplied: the colour as it is meant to be composited is the straight one
            img = img.convert("RGBA" if mode == "RGBa" else "LA")
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() == 255:
            alpha = None
        elif not keep_alpha:
            notes.append("alpha channel dropped (pranc codes opaque images)")
            alpha = None
        img = img.convert("RGB" if mode in ("RGBA", "PA", "RGBa") else "L")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / hi)), 0, 255).astype(np.uint8)
        if hi != 255.0:
            notes.append("16-bit image reduced to 8 bits")
        img = Image.fromarray(arr)
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("RGB", "L") and not (mode == "CMYK" and icc):
        img = img.convert("RGB")
    if icc and (img.mode == "CMYK" or ("icc" not in keep and img.mode == "RGB")):
        img = _to_srgb(img, icc, notes)  # a CMYK profile describes no pixels pranc codes: converted
    elif icc and "icc" in keep:
        name = profile_name(icc)
        if name is None:
            notes.append("embedded ICC profile ignored (lcms cannot read it)")
        elif "srgb" not in name.lower():  # an sRGB profile says what a picture without one means: not kept
            found["icc"] = icc
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if alpha is not None:
        arr = np.concatenate([arr, alpha[:, :, None]], axis=2)
    meta = Metadata(**{k: v for k, v in found.items() if k in keep and v})
    return np.ascontiguousarray(arr), notes, meta


def _to_srgb(img: Image.Image, icc: bytes, notes: list[str]) -> Image.Image:
    """An RGB or CMYK image with an embedded ICC profile -> sRGB RGB (where the profile is not kept: a decoded
    picture without one is shown as sRGB, so a picture in Display P3 or Adobe RGB is converted on the way in,
    or its colours would shift). An sRGB profile leaves the pixels as they are; an unreadable one is ignored
    with a warning.
    """
    from PIL import ImageCms

    name = profile_name(icc)
    if img.mode == "RGB" and name is not None and "srgb" in name.lower():
        return img
    try:
        out, name = srgb_from(img, icc)
    except (ImageCms.PyCMSError, *PROFILE_ERRORS) as e:
        notes.append(f"embedded ICC profile ignored ({e})")
        return img.convert("RGB")
    notes.append(f"converted from its ICC profile ({name}) to sRGB, as the decoded picture will be")
    return out


def _existing_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    return p


def read_bytes(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> bytes:
    """Whole contents of an input .prc file (``-``: standard input), with a clear InputError when it cannot
    be read or is a picture (the wrong command), and a LimitError, before reading, when it is over ``limit``
    bytes."""
    if str(path) == STDIO:
        data = _read_stdin(limit, "a .prc file")
    else:
        p = _existing_file(path)
        try:
            size = p.stat().st_size
            if size > limit:  # refused without reading
                raise LimitError(f"{p}: {size} bytes, larger than any .prc file ({limit} at most)")
            with p.open("rb") as f:
                data = _read_limited(f, limit, str(p), "a .prc file")  # a pipe or a growing file: no size to trust
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e.strerror})") from None
    kind = picture_format(data) if data[:4] != PRC_MAGIC else None
    if kind:
        name = "<stdin>" if str(path) == STDIO else path
        raise InputError(f"{name}: a {kind} picture, not a .prc file (pranc encode compresses it)")
    return data


def picture_format(data: bytes) -> str | None:
    """The format Pillow finds ``data`` to be a picture of (from its header alone), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.format
    except Exception:  # noqa: BLE001 (not a picture, whatever Pillow's plugins raise on it)
        return None


def read_image(path: str | os.PathLike, keep_alpha: bool = False) -> tuple[np.ndarray, list[str]]:
    """Load an image file (``-``: standard input) as uint8 (H, W, C) and warnings (:func:`to_array`), its colours
    converted to sRGB and no metadata kept; raises InputError/LimitError with a clear message."""
    image, notes, _ = read_picture(path, keep_alpha)
    return image, notes


def read_picture(path: str | os.PathLike, keep_alpha: bool = False,
                 keep: Collection[str] = ()) -> tuple[np.ndarray, list[str], Metadata]:
    """:func:`read_image`, and the metadata of the kinds in ``keep`` (``metadata.KINDS``) the file holds (an ICC
    profile kept leaves the pixels in its space)."""
    if str(path) == STDIO:
        p, src = "<stdin>", io.BytesIO(_read_stdin(MAX_STDIN_IMAGE_BYTES, "image"))
        head = src.getvalue()[:12]
    else:
        p = src = _existing_file(path)
        try:
            if is_stream(p):  # a pipe (`<(cat a.png)`) cannot be read twice, nor seeked as Pillow does
                with open(p, "rb") as f:
                    src = io.BytesIO(_read_limited(f, MAX_STDIN_IMAGE_BYTES, str(p), "image"))
                head = src.getvalue()[:12]
            else:
                with open(p, "rb") as f:
                    head = f.read(12)
        except OSError:
            head = b""  # Pillow's open below says why
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        _heif_opener(p)
    if head[:4] == PRC_MAGIC:
        raise InputError(f"{p}: a .prc file, not a picture (pranc decode reads it)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's words on a corrupt file: what breaks is reported
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                # Pillow decodes 16-bit colour to 8 bits (by truncation), and its tiles are the one place that
                # says so, before the load; 16-bit grey stays 16-bit and to_array notes it
                deep = img.mode in ("RGB", "RGBA") and any(SIXTEEN_BIT.search(str(t.args)) for t in img.tile)
                img.load()
                array, notes, meta = to_array(img, keep_alpha, keep)
                return array, notes + ["16-bit image reduced to 8 bits"] * deep, meta
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise LimitError(f"{p}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise InputError(f"{p}: not an image Pillow can read") from None
    except PermissionError:
        raise InputError(f"{p}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{p}: unreadable or corrupt image ({e})") from None
    except Exception as e:  # noqa: BLE001 (Pillow's plugins raise TypeError, KeyError, struct.error... on a corrupt
        # file; from anywhere else it is a bug, and goes on as one)
        if not raised_by_pillow(e):
            raise
        raise InputError(f"{p}: unreadable or corrupt image ({type(e).__name__}: {e})") from None


# a raw mode of 16 bits a channel (PNG's RGB;16B, TIFF's RGBA;16L...), not BMP's 5-6-5 pixels (BGR;16)
SIXTEEN_BIT = re.compile(r";16[BLN]")


def raised_by_pillow(e: BaseException) -> bool:
    """Whether the innermost Python frame of ``e``'s traceback is Pillow's (or its HEIF plugin's): a corrupt
    file, not a bug in pranc."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    parts = Path(tb.tb_frame.f_code.co_filename).parts
    return "PIL" in parts or "pillow_heif" in parts


def _heif_opener(name: object) -> None:
    """Let Pillow open HEIF files (pillow-heif's plugin; its import costs about 70 ms, so only for such a file),
    or say how to where pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:
        raise InputError(f"{name}: a HEIF/HEIC picture, which needs pillow-heif to read "
                         f"(python3 -m pip install 'pranc-codec[heif]')") from None
    pillow_heif.register_heif_opener()


# Decoded pictures are written losslessly, in the format the output's suffix names: re-encoding the codec's
# pixels with JPEG or lossy WebP would add a second loss the user did not ask for (.webp is WebP lossless).
OUTPUT_FORMATS = {".png": "PNG", ".ppm": "PPM", ".pgm": "PPM", ".pnm": "PPM", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".tga": "TGA", ".webp": "WEBP"}
# zlib's level for a decoded PNG. Pillow's default, 6, spent 42 % of a 24-megapixel decode writing it (7.7 of
# 18.3 s) and a third of a Kodak one's (0.12 of 0.36 s); level 4 writes 2.6-2.9 x faster for 2-4 % more bytes on
# decoded photographs, 0-6 % on screens and charts (eval/ABLATIONS.md BT1). Levels 1-3 (zlib's greedy matching)
# were faster still but 9-17 % larger.
PNG_LEVEL = 4
# Pillow's save options of each format that needs them: PNG's level, WebP lossless with every pixel's colour kept
# under transparent ones
SAVE_OPTIONS = {"PNG": {"compress_level": PNG_LEVEL}, "WEBP": {"lossless": True, "exact": True}}
MAX_WEBP_SIDE = 16383  # WebP's limit; pranc's pictures go to 16384


ALPHA_FORMATS = ("PNG", "TIFF", "TGA", "WEBP")  # of OUTPUT_FORMATS, those that hold an alpha channel


def check_alpha_format(path: str | os.PathLike, format: str) -> None:
    """Refuse to write a picture with transparency in a format that would lose it (``format``: of
    :func:`output_format`)."""
    if format not in ALPHA_FORMATS:
        names = [k for k, v in OUTPUT_FORMATS.items() if v in ALPHA_FORMATS]
        raise InputError(f"{path}: {format} cannot hold this picture's transparency (write {', '.join(names)})")


def check_prc_name(path: str | os.PathLike) -> None:
    """Refuse to write a ``.prc`` stream under an image file's name (``pranc encode a.png -o small.png``: no viewer
    could open it), before the work."""
    suffix = Path(path).suffix.lower() if str(path) != STDIO else ""
    if suffix in Image.registered_extensions() or suffix in PLUGIN_SUFFIXES:
        raise InputError(f"{path}: pranc encode writes a .prc file, not {suffix} (name it .prc; pranc decode "
                         f"writes pictures)")


def check_output_size(path: str | os.PathLike, format: str, width: int, height: int) -> None:
    """Refuse, before decoding, a picture larger than ``format`` can hold (WebP: 16383 pixels a side)."""
    if format == "WEBP" and max(width, height) > MAX_WEBP_SIDE:
        raise InputError(f"{path}: WebP holds at most {MAX_WEBP_SIDE} pixels a side, not {width}x{height} "
                         f"(write .png)")


def output_format(path: str | os.PathLike) -> str:
    """Pillow's name of the lossless format ``path``'s suffix asks for: PNG for ``-`` or no suffix."""
    if str(path) == STDIO:
        return "PNG"
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"{path}: cannot write {suffix} (decoded pictures are written losslessly: "
                         f"{', '.join(OUTPUT_FORMATS)})")
    return OUTPUT_FORMATS[suffix]


def image_bytes(arr: np.ndarray, format: str = "PNG") -> bytes:
    """uint8 (H, W, C) -> the contents of an image file in ``format`` (one of ``OUTPUT_FORMATS``' values); C in
    {2, 4} (alpha last) only in ``ALPHA_FORMATS``."""
    return image_file(arr, format)[0]


def image_file(arr: np.ndarray, format: str = "PNG",
               metadata: Metadata | None = None) -> tuple[bytes, list[str], list[str]]:
    """:func:`image_bytes` with ``metadata`` written into the file where ``format`` holds it, else the pixels
    converted from its ICC profile to sRGB; and notes for the user on what is left out, and the kinds written
    (of ``metadata.KINDS``)."""
    if arr.shape[2] in (2, 4):
        check_alpha_format("the output", format)
    options: dict = {}
    notes: list[str] = []
    written: list[str] = []
    if metadata:
        options, written, notes = save_options(metadata, format)
        if metadata.icc and "icc_profile" not in options:
            arr, note = to_srgb(arr, metadata.icc)
            notes.insert(0, f"{format} holds no colour profile: {note}")
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    options.update(SAVE_OPTIONS.get(format, {}))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # Pillow's words on odd EXIF tags as it writes them: the notes say what matters
        warnings.simplefilter("ignore")
        try:
            img.save(buf, format=format, **options)
        except Exception:  # noqa: BLE001 (TIFF's writer raises TypeError, ValueError or struct.error on tags it
            # cannot write: an EXIF from a tampered file; the picture is still written, without it)
            if not (metadata and metadata.exif and "exif" in options):
                raise
            # the XMP rides in TIFF's tags too
            options = {**save_options(replace(metadata, exif=None), format)[0], **SAVE_OPTIONS.get(format, {})}
            if "exif" in written:
                notes.append(f"the picture's EXIF is corrupt: left out of the {format}")
                written.remove("exif")
            buf = io.BytesIO()
            img.save(buf, format=format, **options)
    return buf.getvalue(), notes, written


def write_output(path: str | os.PathLike, data: bytes, *, force: bool = False,
                 protect: tuple[str | os.PathLike, ...] = ()) -> None:
    """:func:`atomic_write`; for ``-`` standard output, and for a pipe or a character device (``/dev/null``,
    ``/dev/stdout``, a FIFO) a plain write into it, which nothing is replaced by (a terminal is refused:
    binary data there is of no use and garbles it)."""
    _refuse_device(path)  # a file's own refusals are atomic_write's, made where it writes
    if str(path) == STDIO:
        # a reader gone or a full disk under a redirection: the CLI says so (cli._errors), as for its summaries
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    elif is_stream(path):
        try:
            with open(path, "wb") as f:
                if f.isatty():
                    raise InputError(f"{path} is a terminal: redirect it to a file or a pipe")
                f.write(data)
        except OSError as e:
            raise InputError(f"{path}: cannot write ({e.strerror})") from None
    else:
        atomic_write(path, data, force=force, protect=protect)


def check_output(path: str | os.PathLike, force: bool = True,
                 protect: tuple[str | os.PathLike, ...] = ()) -> None:
    """Refuse an output before the work, not only after it: ``-`` when standard output is a terminal, a block
    device, and for a file what :func:`atomic_write` would refuse once the work is done (a directory that does
    not exist, a directory in the file's place, an input in ``protect``, an existing file unless ``force``; a
    terminal named by its path is refused when it is opened)."""
    mode = _refuse_device(path)
    if mode is not None and (mode == 0 or stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        _refuse_file(Path(path), force, protect)


def _refuse_device(path: str | os.PathLike) -> int | None:
    """Refuse ``-`` when standard output is a terminal, and a block device; the path's mode (0 where it is not
    there yet, or not reachable: its directory decides), None for ``-``."""
    if str(path) == STDIO:
        if sys.stdout.isatty():
            raise InputError("<stdout> is a terminal: redirect it to a file or a pipe")
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return 0
    if stat.S_ISBLK(mode):
        raise InputError(f"{path}: is a block device, not a file")
    return mode


def _refuse_file(shown: Path, force: bool, protect: tuple[str | os.PathLike, ...]) -> Path:
    """The file ``shown`` names (a link's target: written through, as cp does; the link stays a link), where a
    new file may go there: raises InputError where its directory does not exist, it is a directory, it is one
    of ``protect`` (the inputs), or it exists and not ``force``."""
    p = shown
    if p.is_symlink() and p.exists():
        p = Path(os.path.realpath(p))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{shown}: directory {parent} does not exist")
    if p.is_dir():
        raise InputError(f"{shown}: is a directory")
    for src in protect:
        if p.exists() and Path(src).exists() and os.path.samefile(p, src):
            raise InputError(f"{shown}: refusing to overwrite the input file")
    if p.exists() and not force:
        raise InputError(f"{shown}: already exists (use --force to overwrite)")
    return p


def _new_file_mode() -> int:
    """The permission bits ``open()`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask


TEMP_NAME_CHARS = 64  # of the output's name in its temporary file's


def atomic_write(path: str | os.PathLike, data: bytes, *, force: bool = False,
                 protect: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, never half-written.

    Refuses to overwrite any file in ``protect`` (the inputs), and an existing
    ``path`` unless ``force``. A new file gets the permissions ``open()`` would
    give it (the temporary file is created owner-only); a file replaced with
    ``force`` keeps its own.
    """
    shown = Path(path)  # messages name the path as given
    p = _refuse_file(shown, force, protect)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        mode = p.stat().st_mode & 0o7777 if p.exists() else _new_file_mode()
        # the name cut short: a name near the file system's 255 bytes is valid, its temporary name would not be
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:TEMP_NAME_CHARS]}.", suffix=".part", dir=parent)
    except OSError as e:
        raise InputError(f"{shown}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if force:
            os.replace(tmp, p)
        else:
            _rename_no_clobber(tmp, p)
    except BaseException as e:
        # Ctrl-C or a full disk: leave nothing behind.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):  # a full disk or quota, an I/O error: one line, not an internal error
            raise InputError(f"{shown}: cannot write ({e.strerror})") from None
        raise


def _rename_no_clobber(tmp: str, p: Path) -> None:
    """Move ``tmp`` to ``p`` unless ``p`` has appeared since it was checked (another process writing it)."""
    try:
        os.link(tmp, p)  # atomic, and fails if p exists, where os.replace would overwrite it
    except FileExistsError:
        raise InputError(f"{p}: already exists (use --force to overwrite)") from None
    except OSError:  # a file system without hard links: the check above is all there is
        os.replace(tmp, p)
        return
    os.unlink(tmp)
