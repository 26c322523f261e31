"""Files on any storage pyarrow speaks: the one layer through which the run directory is read and written.

    run = location("s3://bucket/runs/quickstart-ab12")   # or gs://, abfs://, hdfs://, /mnt/nfs/runs, runs
    (run / "config.yaml").read_text()
    pq.read_table(file.path, filesystem=file.fs)         # pyarrow, Ray Data, Train and Tune take (path, fs)

A :class:`Location` is a pyarrow filesystem and a path on it, with the few
``pathlib`` methods the stages use; a local one is also an ``os.PathLike``.
Credentials and endpoints come from the environment only, through each
store's standard variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_ACCOUNT_NAME``, ...), so
an S3-compatible store works with no config change. (pyarrow reads the
endpoint variables of no store itself; this module passes the S3 one on.)

Hugging Face folders (models, tokenizers) are read from a local copy
(:func:`local_copy`, cached per node and per commit) and written through
:func:`raydsbs.staging.written_whole`, which uploads them whole.
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

COMMIT_MARKER = "_COMMITTED"  # written last into a folder on object storage: the folder is whole
READ_BUFFER_BYTES = 1 << 20  # what a streamed read asks the store for at once
# The AWS SDK gives up on a connection after 1 s and on a request that sends nothing for 3 s ("curlCode: 28,
# Timeout was reached"): too eager for a busy node or a slow S3-compatible store. Seconds, for every S3 client.
S3_TIMEOUTS = {"connect_timeout": 10.0, "request_timeout": 30.0}


def cache_dir() -> Path:
    """``$RAYDSBS_CACHE_DIR`` or ``~/.cache/raydsbs``: downloaded models and local copies of stored folders."""
    return Path(os.environ.get("RAYDSBS_CACHE_DIR", Path.home() / ".cache" / "raydsbs"))


def _filesystem(scheme: str, netloc: str, query: str) -> tuple[pafs.FileSystem, str]:
    """The store's filesystem and the path of ``scheme://netloc/`` on it."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _store(scheme, netloc, query, endpoint, region)


@cache
def _store(scheme: str, netloc: str, query: str, endpoint: str | None, region: str | None):
    """One filesystem object per store and environment (pyarrow's S3 client is costly to make)."""
    if scheme in ("s3", "s3a") and endpoint and "endpoint_override" not in query:
        return pafs.S3FileSystem(endpoint_override=endpoint, region=region or "us-east-1", **S3_TIMEOUTS), netloc
    uri = f"{'s3' if scheme == 's3a' else scheme}://{netloc}/" + (f"?{query}" if query else "")
    fs, root = pafs.FileSystem.from_uri(uri)  # the path of a bucket's root is its name; of an HDFS root, "/"
    if isinstance(fs, pafs.S3FileSystem):  # the URI's options (its query, the bucket's region) with our timeouts
        _, (options,) = fs.__reduce__()  # how pyarrow pickles it: the S3FileSystem's own arguments
        fs = pafs.S3FileSystem(**{**options, **S3_TIMEOUTS})
    return fs, root


class Location:
    """A file or folder on a pyarrow filesystem (it may not exist yet)."""

    __slots__ = ("fs", "path", "_root")

    def __init__(self, fs: pafs.FileSystem, path: str, root: tuple[str, str, str] | None = None):
        self.fs = fs  # what pyarrow, Ray Data, Ray Train and Tune are given
        self.path = path.rstrip("/") or "/"  # the path on that filesystem (a bucket's name first, for object stores)
        # for a URI: (its store's root path on fs, "scheme://netloc", "?query" or ""), to write the URI back
        self._root = root

    # -- names
    def __str__(self) -> str:
        if self._root is None:
            return self.path
        root, base, query = self._root
        relative = self.path[len(root.rstrip("/")) :].lstrip("/")
        return f"{base}/{relative}{query}" if relative else f"{base}{query}"

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __fspath__(self) -> str:
        if not self.is_local:
            raise TypeError(f"{self} is not on a local filesystem; read it through raydsbs.storage")
        return self.path

    def __truediv__(self, name: str | os.PathLike) -> Location:
        return Location(self.fs, posixpath.join(self.path, os.fspath(name)), self._root)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path), self._root)

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def with_suffix(self, suffix: str) -> Location:
        return self.with_name(posixpath.splitext(self.name)[0] + suffix)

    def local_path(self) -> Path:
        return Path(os.fspath(self))

    # -- what is there
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def iterdir(self) -> list[Location]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted((Location(self.fs, info.path, self._root) for info in infos), key=str)

    def glob(self, pattern: str) -> list[Location]:
        """Children matching ``pattern`` level by level (``*.parquet``, ``*/metrics.json``), sorted."""
        found, parts = [self], pattern.split("/")
        for depth, part in enumerate(parts):
            kinds = (
                (pafs.FileType.Directory,) if depth < len(parts) - 1 else (pafs.FileType.Directory, pafs.FileType.File)
            )
            found = [
                Location(self.fs, info.path, self._root)
                for folder in found
                for info in folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))
                if info.type in kinds and fnmatch.fnmatchcase(info.base_name, part)
            ]
        return sorted(found, key=str)

    # -- reading and writing
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def open_input(self) -> io.BufferedReader:
        """The file as a buffered binary stream, to read a line or a block at a time (``with``: closed after)."""
        return io.BufferedReader(self.fs.open_input_stream(self.path), buffer_size=READ_BUFFER_BYTES)

    def write_bytes(self, data: bytes) -> None:
        """Write the file (on object storage, it appears whole when the upload completes)."""
        if self.is_local:
            self.parent.mkdir()
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def touch(self) -> None:
        self.write_bytes(b"")

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def remove(self) -> None:
        """Delete the file, or the folder and everything under it; nothing there is not an error."""
        kind = self._type()
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif kind == pafs.FileType.File:
            self.fs.delete_file(self.path)


def location(where: str | os.PathLike | Location) -> Location:
    """A local path (relative ones against the working directory) or a URI pyarrow knows (``s3://``,
    ``gs://``, ``abfs://``, ``hdfs://``, ``file://``)."""
    if isinstance(where, Location):
        return where
    text = os.fspath(where)
    parts = urlsplit(text)
    if len(parts.scheme) > 1 and parts.scheme != "file" and "://" in text:  # not a Windows drive letter
        if not parts.netloc:
            raise ValueError(f"{text}: a storage URI names its bucket or host ({parts.scheme}://BUCKET/path)")
        fs, root = _filesystem(parts.scheme, parts.netloc, parts.query)
        path = root.rstrip("/") + "/" + parts.path.lstrip("/") if parts.path.strip("/") else root
        query = f"?{parts.query}" if parts.query else ""
        return Location(fs, path, (root, f"{parts.scheme}://{parts.netloc}", query))
    local = parts.path if parts.scheme == "file" else text
    return Location(pafs.LocalFileSystem(), str(Path(local).expanduser().resolve()))


def upload(source: Path, target: Location) -> None:
    """Copy a local file, or a folder and everything in it, to ``target``."""
    if source.is_dir():
        target.mkdir()
    pafs.copy_files(
        str(source), target.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=target.fs
    )


def local_copy(folder: Location | Path | str) -> Path:
    """A local folder holding what ``folder`` holds: the folder itself when it is local; else a copy kept under
    the cache folder, made once per node and per commit of the stored folder (its COMMIT_MARKER)."""
    folder = location(folder)
    if folder.is_local:
        return folder.local_path()
    import hashlib
    import shutil
    import uuid

    marker = folder / COMMIT_MARKER
    if marker.is_file():
        commit = marker.read_text()
    else:  # a folder written by other means: known by its files' names, sizes and times
        infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, recursive=True))
        commit = repr(sorted((info.path, info.size, str(info.mtime)) for info in infos))
    digest = hashlib.sha256(f"{folder}\n{commit}".encode()).hexdigest()[:16]
    target = cache_dir() / "stored" / f"{folder.name}-{digest}"
    if target.is_dir():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    partial.mkdir(parents=True)
    pafs.copy_files(
        folder.path, str(partial), source_filesystem=folder.fs, destination_filesystem=pafs.LocalFileSystem()
    )
    try:
        os.replace(partial, target)
    except OSError:  # another process of this node copied it first
        shutil.rmtree(partial, ignore_errors=True)
    return target
