"""What a picture carries besides its pixels: its ICC colour profile, EXIF, XMP and text (format version 12).

The encoder keeps them as the input file held them (``image_io.read_picture``), so a photograph keeps its
date, camera, place and colour space, and a generated picture its prompt; the decoder writes them into formats
that hold them (PNG: all four; TIFF and WebP: all but the text). A picture in a wide-gamut space (Display P3, Adobe RGB)
keeps its own pixel values and profile, where without the profile it must be converted to sRGB, clipping what
sRGB cannot show. The bytes are stored as read, but that the EXIF orientation is applied to the pixels and
removed (Pillow's ``exif_transpose``), and the EXIF's thumbnail is cut off (:func:`drop_thumbnail`).
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

KINDS = ("icc", "exif", "xmp", "text")  # what ``pranc encode --metadata`` names, in the file's order
XMP_PNG_KEY = "XML:com.adobe.xmp"  # the iTXt keyword that holds XMP in a PNG
TIFF_XMP_TAG = 700
# tags of a TIFF directory that describe the file's own pixels (size, samples, strips, compression, colour map...):
# an EXIF directory holds none, and one that claims to would make the written TIFF wrong
TIFF_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 284, 317, 320, 322,
                              323, 324, 325, 338, 339, 340, 341, 513, 514, 530, 531, 532})
# of image_io.OUTPUT_FORMATS, those Pillow writes an ICC profile, EXIF and XMP into
PROFILE_FORMATS = ("PNG", "TIFF", "WEBP")
TEXT_FORMATS = ("PNG",)  # those it writes text entries into (PNG's iTXt chunks)
COMMENT_KEY = "Comment"  # a JPEG's or GIF's comment, as a text entry (PNG's registered keyword for one)
MAX_PNG_KEYWORD = 79  # PNG's limit on a text chunk's keyword (Latin-1, no NUL)
PROFILE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError)  # with ImageCms.PyCMSError: lcms cannot read it
EXIF_PREFIX = b"Exif\x00\x00"  # what a JPEG's APP1 segment starts with; Pillow's ``info["exif"]`` may keep it
# bytes of one value of each TIFF field type (1 BYTE .. 13 IFD): an entry's value lies out of line when over 4
# (the TIFF 6.0 table; Pillow holds it only in a private attribute, ImageFileDirectory_v2._load_dispatch)
_TIFF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SUB_IFD_TAGS = (0x8769, 0x8825, 0xA005)  # entries whose value is another directory's offset: EXIF, GPS, interop
_THUMBNAIL_TAGS = (0x0201, 0x0111)  # IFD1's entries that give where its picture starts: as a JPEG, as strips


@dataclass(frozen=True)
class Metadata:
    """A picture's metadata, each field as the input held it (None: absent). ``icc``: an ICC profile other
    than sRGB's (an sRGB profile says what a picture without one means, so it is not kept); ``exif``: as Pillow
    reads it (``Image.info["exif"]``, with or without its ``Exif\\0\\0`` prefix); ``xmp``: the XMP packet;
    ``text``: (keyword, text) entries, a PNG's text chunks (tEXt, zTXt, iTXt: a generated picture's prompt and
    settings, an author, a copyright) or a JPEG's or GIF's comment (keyword ``Comment``), in the file's order."""

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    text: tuple[tuple[str, str], ...] | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in KINDS)

    def kinds(self) -> list[str]:
        """The names of the fields present, in ``KINDS``' order."""
        return [k for k in KINDS if getattr(self, k)]

    def sizes(self) -> dict[str, int]:
        """Bytes of each field present (the text's: its keywords and texts in UTF-8)."""
        return {k: sum(len(a.encode()) + len(b.encode()) for a, b in self.text) if k == "text"
                else len(getattr(self, k)) for k in self.kinds()}


assert tuple(f.name for f in fields(Metadata)) == KINDS


def parse_kinds(text: str) -> frozenset[str]:
    """``--metadata`` (``all``, ``none`` or a comma list of ``KINDS``) -> the kinds to keep; ValueError on a
    name it does not know."""
    text = text.strip().lower()
    if text == "all":
        return frozenset(KINDS)
    if text == "none":
        return frozenset()
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(KINDS))
    if unknown or not names:
        raise ValueError(f"unknown metadata {', '.join(unknown) or repr(text)} (all, none, or a list of "
                         f"{', '.join(KINDS)})")
    return frozenset(names)


def profile_name(icc: bytes) -> str | None:
    """The description of the ICC profile ``icc`` ("" where it has none), None where lcms cannot read it."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except (ImageCms.PyCMSError, *PROFILE_ERRORS):
        return None


def srgb_from(img: "Image.Image", icc: bytes) -> tuple["Image.Image", str]:
    """An RGB or CMYK PIL image in the space of the ICC profile ``icc`` -> RGB in sRGB (lcms, relative
    colorimetric: what sRGB cannot show is clipped), and the profile's name. Raises ImageCms.PyCMSError or one
    of ``PROFILE_ERRORS`` where lcms cannot read the profile."""
    from PIL import ImageCms

    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    name = ImageCms.getProfileDescription(src).strip() or "unnamed"
    out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"),
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    return out, name


def to_srgb(image: np.ndarray, icc: bytes) -> tuple[np.ndarray, str]:
    """uint8 (H, W, C) pixels in the space of ``icc`` -> the same in sRGB (C in {3, 4}: the alpha kept; C in
    {1, 2}: grey left as it is), and a note for the user. A profile lcms cannot read leaves the pixels as they
    are, and says so."""
    from PIL import Image, ImageCms

    channels = image.shape[2]
    if channels < 3:
        return image, "written without its ICC profile"
    try:
        rgb, name = srgb_from(Image.fromarray(np.ascontiguousarray(image[:, :, :3])), icc)
    except (ImageCms.PyCMSError, *PROFILE_ERRORS) as e:
        return image, f"its ICC profile is unreadable ({e}): written as it is, without it"
    out = np.asarray(rgb, dtype=np.uint8)
    if channels == 4:
        out = np.concatenate([out, image[:, :, 3:]], axis=2)
    return np.ascontiguousarray(out), f"converted from its ICC profile ({name}) to sRGB"


def text_of(img: "Image.Image") -> tuple[tuple[str, str], ...]:
    """The text entries of an image as Pillow opened it (before any transform, which drops a PNG's): a PNG's text
    chunks but its XMP (kept as such), or a JPEG's or GIF's comment."""
    chunks = getattr(img, "text", None)  # PngImageFile only: every tEXt, zTXt and iTXt chunk
    if chunks:
        return tuple((str(k), str(v)) for k, v in chunks.items() if k != XMP_PNG_KEY)
    comment = img.info.get("comment")
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", "replace")
    return ((COMMENT_KEY, comment),) if comment else ()


def png_keyword(key: str) -> bool:
    """Whether ``key`` can be a PNG text chunk's keyword (1-79 Latin-1 characters, no NUL)."""
    try:
        return 1 <= len(key.encode("latin-1")) <= MAX_PNG_KEYWORD and "\0" not in key
    except UnicodeEncodeError:
        return False


def save_options(meta: Metadata, format: str) -> tuple[dict, list[str], list[str]]:
    """Pillow ``save`` keyword arguments that write ``meta`` into a ``format`` file; the kinds they write; and
    notes for the user on what they leave out. An ICC profile where ``format`` holds none is left to the
    caller (:func:`to_srgb` converts the pixels)."""
    kinds = meta.kinds()
    if format not in PROFILE_FORMATS:
        out = [k for k in kinds if k != "icc"]
        notes = [f"{format} cannot hold the picture's {_or(out)}: not written (write .png to keep it)"] if out else []
        return {}, [], notes
    options: dict = {}
    written = [k for k in kinds if k != "text" or format in TEXT_FORMATS]
    notes = [] if format in TEXT_FORMATS or not meta.text else \
        [f"{format} cannot hold the picture's text entries: not written (write .png to keep them)"]
    if meta.icc:
        options["icc_profile"] = meta.icc
    if format == "PNG":
        if meta.exif:
            options["exif"] = meta.exif
        if meta.xmp or meta.text:
            from PIL import PngImagePlugin

            info = PngImagePlugin.PngInfo()
            if meta.xmp:
                info.add_itxt(XMP_PNG_KEY, meta.xmp.decode("utf-8", "replace"))
            keep = [(k, v) for k, v in meta.text or () if png_keyword(k)]
            for key, value in keep:
                info.add_itxt(key, value)
            if len(keep) < len(meta.text or ()):  # only from a tampered file: the encoder reads PNG's own keywords
                notes.append(f"{len(meta.text) - len(keep)} text entries whose keywords PNG cannot hold: left out")
                if not keep:
                    written.remove("text")
            options["pnginfo"] = info
        return options, written, notes
    if format == "WEBP":  # RIFF chunks of their own: ICCP, EXIF, XMP
        options.update({k: getattr(meta, k) for k in ("exif", "xmp") if getattr(meta, k)})
        return options, written, notes
    # TIFF: Pillow writes the EXIF's tags into the TIFF's own directory, and XMP as tag 700 beside them
    if meta.exif or meta.xmp:
        from PIL import Image

        tags = Image.Exif()
        if meta.exif:
            try:
                with warnings.catch_warnings():  # Pillow's words on odd tags: what matters is whether it loads
                    warnings.simplefilter("ignore")
                    tags.load(meta.exif)
            except (SyntaxError, ValueError, OSError, struct.error):  # not EXIF after all: the rest is written
                tags = Image.Exif()
                written.remove("exif")
                notes.append(f"the picture's EXIF is corrupt: left out of the {format}")
            for tag in TIFF_LAYOUT_TAGS & set(tags):  # the TIFF's own layout is the writer's, not the EXIF's
                del tags[tag]
        if meta.xmp:
            tags[TIFF_XMP_TAG] = meta.xmp
        if len(tags):
            options["exif"] = tags
    return options, written, notes


def drop_thumbnail(exif: bytes) -> bytes:
    """``exif`` (with or without :data:`EXIF_PREFIX`) without its thumbnail, where the thumbnail's directory
    (IFD1) and picture end it, as cameras write them: IFD0's link to IFD1 set to 0 and the tail cut. Every other
    byte stays where it was, so offsets into it (a maker note's own) still hold. Returned as it is where
    anything else lies after the thumbnail's start, where there is none, or where it cannot be read as TIFF.

    The thumbnail is a small JPEG of the picture (160 x 120 pixels, 4-11 kB): nothing that reads the formats
    ``pranc decode`` writes shows it, and its bytes would come out of the rate."""
    head = EXIF_PREFIX if exif.startswith(EXIF_PREFIX) else b""
    tiff = exif[len(head):]
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        if struct.unpack_from(order + "H", tiff, 2)[0] != 42:
            return exif
        ends = [8]  # the end of every byte range the directories other than IFD1 use (the header's first)

        def entries(offset: int) -> tuple[int, dict[int, tuple[int, int, int]]]:
            """The offset of the directory's link to the next, and its entries: tag -> (type, count, value)."""
            (n,) = struct.unpack_from(order + "H", tiff, offset)
            link = offset + 2 + 12 * n
            struct.unpack_from(order + "I", tiff, link)  # the link is there
            return link, {tag: (typ, count, value) for tag, typ, count, value in
                          (struct.unpack_from(order + "HHII", tiff, offset + 2 + 12 * i) for i in range(n))}

        def walk(offset: int, depth: int) -> int:
            """Record the ends of the directory at offset, of its values and of its sub-directories; its link."""
            link, found = entries(offset)
            ends.append(link + 4)
            for tag, (typ, count, value) in found.items():
                if _TIFF_TYPE_BYTES[typ] * count > 4:
                    ends.append(value + _TIFF_TYPE_BYTES[typ] * count)
                if tag in _SUB_IFD_TAGS and depth < 2:  # IFD0 -> EXIF -> interop at most
                    walk(value, depth + 1)
            return link

        link = walk(struct.unpack_from(order + "I", tiff, 4)[0], 0)
        (ifd1,) = struct.unpack_from(order + "I", tiff, link)
        if ifd1 == 0:
            return exif
        starts = [ifd1]
        for tag, (typ, count, value) in entries(ifd1)[1].items():
            if _TIFF_TYPE_BYTES[typ] * count > 4:
                starts.append(value)
            if tag in _THUMBNAIL_TAGS:
                if count != 1:  # strips: their offsets lie out of line, the picture elsewhere
                    return exif
                starts.append(value)
        cut = min(starts)
        if cut < max(ends):
            return exif
        out = bytearray(tiff[:cut])
        struct.pack_into(order + "I", out, link, 0)
        return head + bytes(out)
    except (KeyError, struct.error):  # not TIFF, a type no reader knows, or an offset past the end
        return exif


def label(kind: str) -> str:
    """How messages name a kind of ``KINDS``: ``ICC``, ``EXIF``, ``XMP``, ``text``."""
    return kind if kind == "text" else kind.upper()


def _or(kinds: list[str]) -> str:
    """``EXIF``, ``EXIF or XMP``, ``EXIF, XMP or text entries``."""
    names = ["text entries" if k == "text" else label(k) for k in kinds]
    return " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))
