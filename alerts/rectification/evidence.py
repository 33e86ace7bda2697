"""Evidence files of fix reports: checked on the way in, stored by content hash, verified out.

A photo of a repaired cable is what lets the office strike an item off without a
second visit, so it must still be the same photo when someone asks years later.
Files are therefore stored under their SHA-256 (``evidence/ab/abcdef...``), are
never overwritten or deleted by EWG, and are hashed again whenever they are read:
a file changed on disk is reported as damaged rather than served as evidence.

The type is decided from the file's first bytes, never from the name or the
client's Content-Type, since both are whatever the uploader says. Accepted are the
formats a phone or a scanner produces and a browser shows: JPEG, PNG, WebP, PDF.

Disk work runs in a thread (``asyncio.to_thread``), so the event loop never waits
on a 10 MB write.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import EwgError, StoreError

MIB = 1024 * 1024


class EvidenceRefused(EwgError):
    """An upload EWG will not keep; ``status`` is the HTTP status that says why."""

    status = 422


class EvidenceTooLarge(EvidenceRefused):
    status = 413


class EvidenceTypeRefused(EvidenceRefused):
    status = 415


class EvidenceDamaged(StoreError):
    """A stored file is missing or no longer matches its recorded hash."""


@dataclass(frozen=True, slots=True)
class EvidenceLimits:
    max_bytes: int = 10 * MIB
    max_files: int = 10

    def max_request_bytes(self) -> int:
        """An upper bound for a whole report request: the files plus 64 KiB for the note
        (at most 4000 characters) and the multipart framing."""
        return self.max_files * self.max_bytes + 64 * 1024


class UploadSource(Protocol):
    """An uploaded file as the web framework hands it over (Starlette's UploadFile fits)."""

    filename: str | None
    size: int | None

    async def read(self, size: int = -1) -> bytes: ...

    async def seek(self, offset: int) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    filename: str
    content_type: str
    size: int
    sha256: str


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)

#: Enough of the head of a file to recognise every accepted type.
HEAD_BYTES = 16

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")


def sniff(head: bytes) -> str | None:
    """The content type of a file from its first bytes; None if it is not an accepted type.

    >>> sniff(b"\\xff\\xd8\\xff\\xe0\\x00\\x10JFIF")
    'image/jpeg'
    >>> sniff(b"RIFF\\x10\\x00\\x00\\x00WEBPVP8 ")
    'image/webp'
    >>> sniff(b"MZ\\x90\\x00") is None  # a Windows executable renamed to photo.jpg
    True
    """
    for magic, content_type in _SIGNATURES:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\/]")


def display_name(filename: str | None) -> str:
    """The uploader's file name, only for showing and for Content-Disposition.

    It never becomes a path: files are stored by hash. Directory parts, control
    characters and quotes are dropped so the name is safe to echo in a header.

    >>> display_name("../../etc/整改后照片.jpg")
    '整改后照片.jpg'
    >>> display_name(None)
    'evidence'
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name).strip()[:200]
    return name or "evidence"


class EvidenceFiles:
    """The evidence directory: content-addressed, write-once."""

    def __init__(self, root: Path, limits: EvidenceLimits | None = None) -> None:
        self.root = root
        self.limits = limits or EvidenceLimits()

    def path_of(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    async def check(self, uploads: list[UploadSource]) -> list[str]:
        """Refuse the whole batch before anything is written; return each file's content type.

        Checked up front, so a report whose third photo is too large leaves no
        trace at all instead of two orphaned files.
        """
        limits = self.limits
        if len(uploads) > limits.max_files:
            raise EvidenceRefused(
                f"at most {limits.max_files} files can be attached to one report,"
                f" got {len(uploads)}"
            )
        types: list[str] = []
        for upload in uploads:
            name = display_name(upload.filename)
            if upload.size is not None and upload.size > limits.max_bytes:
                raise EvidenceTooLarge(_too_large(name, upload.size, limits.max_bytes))
            head = await upload.read(HEAD_BYTES)
            await upload.seek(0)
            if not head:
                raise EvidenceRefused(f"file {name!r} is empty")
            content_type = sniff(head)
            if content_type is None:
                raise EvidenceTypeRefused(
                    f"file {name!r} is not an accepted type; accepted are JPEG, PNG, WebP"
                    " photos and PDF documents (the type is read from the file's content)"
                )
            types.append(content_type)
        return types

    async def save(self, upload: UploadSource, content_type: str) -> StoredFile:
        """Read one checked upload and store it under its hash (in a thread)."""
        name = display_name(upload.filename)
        limit = self.limits.max_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:  # the declared size may be missing or wrong
            raise EvidenceTooLarge(_too_large(name, len(data), limit))
        sha256 = await asyncio.to_thread(self._write, data)
        return StoredFile(name, content_type, len(data), sha256)

    def _write(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_of(sha256)
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return sha256  # the same bytes were uploaded before: stored once, shared
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    async def read(self, sha256: str) -> bytes:
        """The stored bytes, checked against their hash; EvidenceDamaged if they changed."""
        return await asyncio.to_thread(self._read, sha256)

    def _read(self, sha256: str) -> bytes:
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EvidenceDamaged(f"evidence file {sha256} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise EvidenceDamaged(
                f"evidence file {sha256} no longer matches its recorded hash; it was changed"
                " on disk and is not served"
            )
        return data


def _too_large(name: str, size: int, limit: int) -> str:
    return f"file {name!r} is {size} bytes; the limit is {limit} bytes ({limit / MIB:g} MiB)"
