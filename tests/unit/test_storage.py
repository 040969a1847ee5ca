"""File storage of job photos and signatures: only real images of the accepted formats, within
the size limit, kept once under their SHA-256, written atomically; a refusal writes nothing."""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, features

from parkgrid.config import Settings, from_env
from parkgrid.services.errors import ValidationFailed
from parkgrid.storage import (
    PHOTO_FORMATS,
    SIGNATURE_FORMATS,
    FileStorage,
    check_image,
    read_limited,
)


def image_bytes(fmt: str, size=(64, 48)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "files", max_bytes=50_000)


def problem(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    (found,) = exc.value.problems
    return found.field, found.text()


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"),
                                                   ("JPEG", "image/jpeg")])
def test_a_real_photo_is_stored_under_its_hash(storage, fmt, content_type):
    data = image_bytes(fmt)
    checked = storage.check(data, field="photo")
    assert (checked.content_type, checked.width, checked.height) == (content_type, 64, 48)
    key = storage.put(checked)
    assert key == hashlib.sha256(data).hexdigest() == checked.sha256
    assert storage.read(key) == data
    assert storage.path(key) == storage.root / key[:2] / key[2:4] / key
    assert storage.files() == [storage.path(key)]  # no temporary file left behind


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow build lacks WebP support")
def test_webp_photos_are_accepted(storage):
    assert storage.check(image_bytes("WEBP"), field="photo").content_type == "image/webp"


def test_the_same_bytes_are_kept_once(storage):
    checked = storage.check(image_bytes("PNG"), field="photo")
    assert storage.put(checked) == storage.put(checked)
    assert len(storage.files()) == 1


def test_a_text_file_named_jpg_is_refused_and_nothing_is_written(storage, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a photo, just text pretending to be one\n")
    with pytest.raises(ValidationFailed) as caught:
        storage.check(fake.read_bytes(), field="photo")
    field, text = problem(caught)
    assert field == "photo" and "JPEG, PNG, WEBP" in text
    assert storage.files() == [] and not storage.root.exists()


def test_a_truncated_image_is_refused(storage):
    data = image_bytes("JPEG", size=(200, 200))
    with pytest.raises(ValidationFailed):
        storage.check(data[: len(data) // 2], field="photo")
    assert storage.files() == []


def test_other_image_formats_are_refused_by_name(storage):
    with pytest.raises(ValidationFailed) as caught:
        storage.check(image_bytes("GIF"), field="photo")
    assert problem(caught) == ("photo", "Only JPEG, PNG, WEBP images are accepted; this file "
                                        "is GIF.")


def test_a_signature_must_be_a_png(storage):
    storage.check(image_bytes("PNG"), field="signature", formats=SIGNATURE_FORMATS)
    with pytest.raises(ValidationFailed) as caught:
        storage.check(image_bytes("JPEG"), field="signature", formats=SIGNATURE_FORMATS)
    assert problem(caught)[0] == "signature"


def test_an_oversize_file_is_refused_before_it_is_decoded(storage):
    big = image_bytes("PNG", size=(10, 10)) + b"\0" * 60_000
    with pytest.raises(ValidationFailed) as caught:
        storage.check(big, field="photo")
    assert problem(caught) == ("photo", f"The file has {len(big)} bytes; at most 50000 bytes "
                                        "are accepted.")
    with pytest.raises(ValidationFailed):
        check_image(b"", field="photo")
    assert storage.files() == []


def test_an_upload_stream_is_read_no_further_than_the_limit():
    stream = BytesIO(b"x" * 5000)
    with pytest.raises(ValidationFailed):
        read_limited(stream, 999, field="photo")
    assert stream.tell() == 1000  # the limit plus one byte, not the whole body
    assert read_limited(BytesIO(b"x" * 999), 999, field="photo") == b"x" * 999


def test_a_decompression_bomb_is_refused(storage, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValidationFailed):
        storage.check(image_bytes("PNG", size=(30, 30)), field="photo")


def test_keys_are_only_hashes(storage):
    with pytest.raises(KeyError):
        storage.path("../../etc/passwd")
    assert set(PHOTO_FORMATS) == {"JPEG", "PNG", "WEBP"}


def test_storage_settings_come_from_the_environment(tmp_path):
    default = from_env({"PARKGRID_DATA_DIR": str(tmp_path)})
    assert default.files_dir == tmp_path / "files"
    assert default.upload_max_bytes == 10 * 1024 * 1024
    chosen = from_env({"PARKGRID_DATA_DIR": str(tmp_path),
                       "PARKGRID_STORAGE_DIR": str(tmp_path / "uploads"),
                       "PARKGRID_UPLOAD_MAX_BYTES": "2048"})
    assert (chosen.files_dir, chosen.upload_max_bytes) == (tmp_path / "uploads", 2048)
    with pytest.raises(ValueError, match="PARKGRID_UPLOAD_MAX_BYTES"):
        from_env({"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_UPLOAD_MAX_BYTES": "ten"})
    # Settings built by hand (tests, tools) fall back to the data folder too.
    assert Settings(data_dir=tmp_path).files_dir == tmp_path / "files"
