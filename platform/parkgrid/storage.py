"""Uploaded files (job photos, customer signatures): checked to be real images, then kept
content-addressed (named by their SHA-256) and written atomically.

An upload is checked whole before anything is written: too large, empty, not decodable, or
not one of the accepted formats is refused with a `ValidationFailed` naming the field, and
nothing is stored. The same bytes uploaded twice are kept once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .services.errors import N_, FieldProblem, ValidationFailed

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# Pillow format name -> the content type stored and served.
PHOTO_FORMATS: Mapping[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png",
                                    "WEBP": "image/webp"}
SIGNATURE_FORMATS: Mapping[str, str] = {"PNG": "image/png"}
_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CheckedImage:
    """An upload that decoded as an accepted image; `sha256` is also its storage key."""

    data: bytes
    content_type: str
    sha256: str
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.data)


def _names(formats: Mapping[str, str]) -> str:
    return ", ".join(sorted(formats))


def check_image(data: bytes, *, field: str, formats: Mapping[str, str] = PHOTO_FORMATS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> CheckedImage:
    """`data` as a checked image, or `ValidationFailed` for `field` (nothing is written).

    The whole image is decoded, so a truncated file, or a text file renamed ``.jpg``, is
    refused whatever its name or declared type says.
    """
    if not data:
        raise ValidationFailed([FieldProblem(field, N_("The file is empty."))])
    if len(data) > max_bytes:
        raise ValidationFailed([FieldProblem(
            field, N_("The file has %(size)s bytes; at most %(max)s bytes are accepted."),
            {"size": len(data), "max": max_bytes})])
    try:
        with warnings.catch_warnings():
            # A "decompression bomb" (a tiny file claiming a huge image) is refused outright.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                found = image.format
                if found not in formats:
                    raise ValidationFailed([FieldProblem(
                        field, N_("Only %(allowed)s images are accepted; this file is %(found)s."),
                        {"allowed": _names(formats), "found": found or "?"})])
                image.load()
                width, height = image.size
    except ValidationFailed:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValidationFailed([FieldProblem(
            field, N_("The file is not a readable image; send %(allowed)s."),
            {"allowed": _names(formats)})]) from exc
    return CheckedImage(data=data, content_type=formats[found],
                        sha256=hashlib.sha256(data).hexdigest(), width=width, height=height)


class UploadTooLarge(ValidationFailed):
    """An uploaded file over the upload limit: refused whole, as HTTP 413, naming its field."""

    status = 413

    def __init__(self, field: str, max_bytes: int):
        super().__init__([FieldProblem(
            field, N_("The file is larger than %(max)s bytes."), {"max": max_bytes})])
        # The problem itself is the message (translated), not "The input was refused: …".
        self.message, self.params = self.problems[0].message, self.problems[0].params


def read_limited(stream: BinaryIO, max_bytes: int, *, field: str) -> bytes:
    """Read an upload stream, refusing it (without reading on) once it passes `max_bytes`."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadTooLarge(field, max_bytes)
    return data


class FileStorage:
    """Files under `root`, named by the SHA-256 of their bytes (``ab/cd/abcd…``)."""

    def __init__(self, root: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        if not _KEY.match(key or ""):
            raise KeyError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def check(self, data: bytes, *, field: str,
              formats: Mapping[str, str] = PHOTO_FORMATS) -> CheckedImage:
        """`check_image` with this storage's size limit."""
        return check_image(data, field=field, formats=formats, max_bytes=self.max_bytes)

    def put(self, image: CheckedImage) -> str:
        """Keep a checked image; returns its key. Written to a temporary file in the target
        folder and renamed into place, so a reader never sees a partial file."""
        key = image.sha256
        target = self.path(key)
        if target.is_file() and target.stat().st_size == image.size:
            return key  # the same bytes are there already
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(image.data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def files(self) -> list[Path]:
        """Every stored file (for checks and clean-up tools)."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file())
