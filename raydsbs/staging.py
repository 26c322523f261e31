"""Every stage output is written all or nothing: aside, then renamed into place in one step.

    with written_whole(run.corpus) as folder:      # a fresh folder beside corpus/
        write the split files into folder
    # corpus/ now exists, whole; after an error (or a kill) it does not exist at all

A stage skips its work when its output is committed (:func:`committed`), so an
output must never look committed half-written: a rerun would take it as done.

On a local or NFS disk the staging path lies beside the target (the same file
system, so the rename is atomic) and is named after the writing host and
process; a later writer on the same host removes what a killed writer left.
On object storage (``s3://`` and the like), which has no rename, the staging
path is a local folder that is uploaded when the block ends: a file appears
whole when its upload completes, and a folder counts as written once its
``_COMMITTED`` marker, uploaded last, is there (a later writer removes a
folder a killed upload left without one). When two writers race for the same
output (two sweep trials tokenizing the same rows), the first to commit wins
and the second writer's copy is dropped.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from raydsbs.failpoints import passing
from raydsbs.storage import COMMIT_MARKER, Location, location, upload

_MARK = ".staging-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_leftovers(target: Path, host: str) -> None:
    """Staging copies of ``target`` from writers on this host that are gone (killed mid-write)."""
    for leftover in target.parent.glob(f"{target.name}{_MARK}{host}-*"):
        try:
            pid = int(leftover.name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        if not _alive(pid):
            _remove(leftover)


def _fresh_path(target: Path) -> Path:
    """A path beside ``target`` named after this host and process, for this writer alone; what killed writers
    on this host left beside ``target`` is removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("-", "_")
    _clear_leftovers(target, host)
    return target.with_name(f"{target.name}{_MARK}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def committed(target: Location | Path) -> bool:
    """Whether ``target`` was written whole: it exists (a folder on object storage: with its marker)."""
    target = location(target)
    info = target.fs.get_file_info(target.path)
    if info.type == pafs.FileType.Directory and not target.is_local:
        return (target / COMMIT_MARKER).is_file()
    return info.type != pafs.FileType.NotFound


@contextmanager
def written_whole(target: Location | Path, folder: bool = True, replace: bool = False) -> Iterator[Path]:
    """Yields a local staging path for ``target`` (a fresh folder, or the path of a file to write); when the
    block ends without an error, it becomes ``target`` in one step (a rename; on object storage, an upload
    committed last). ``replace``: an existing ``target`` is replaced; otherwise, if ``target`` is committed by
    then (another writer finished first), it is kept and this copy dropped. After an error nothing of this
    attempt is left."""
    target = location(target)
    if not target.is_local:
        with _uploaded_whole(target, folder, replace) as staging:
            yield staging
        return
    target = target.local_path()
    staging = _fresh_path(target)
    if folder:
        staging.mkdir()
    try:
        yield staging
        if target.exists() and not replace:
            return  # another writer finished first: its copy stays
        if folder and target.exists():
            _remove(target)
        passing(f"rename:{target.name}")
        try:
            os.replace(staging, target)
        except OSError:
            if replace or not target.exists():
                raise  # not a race lost to another writer: a real error
    finally:
        if staging.exists():
            _remove(staging)


@contextmanager
def _uploaded_whole(target: Location, folder: bool, replace: bool) -> Iterator[Path]:
    """written_whole on object storage: staged in a local folder, uploaded, then committed."""
    with tempfile.TemporaryDirectory(prefix="raydsbs-staging-") as scratch:
        staging = Path(scratch) / target.name
        if folder:
            staging.mkdir()
        yield staging
        if not replace and committed(target):
            return  # another writer finished first: its copy stays
        passing(f"rename:{target.name}")
        if folder:
            target.remove()  # a replaced folder, or what a killed upload left
            upload(staging, target)
            (target / COMMIT_MARKER).write_text(uuid.uuid4().hex)  # also names this commit for local copies
        else:
            upload(staging, target)  # one object, whole when its upload completes


@contextmanager
def scratch_folder(beside: Location | Path) -> Iterator[Path]:
    """A local working folder for the block's own use (beside ``beside`` on a local disk, in the temporary
    folder for object storage), removed when the block ends (after a kill, by the next block that asks)."""
    beside = location(beside)
    if not beside.is_local:
        with tempfile.TemporaryDirectory(prefix=f"raydsbs-{beside.name}-") as scratch:
            yield Path(scratch)
        return
    beside = beside.local_path()
    folder = _fresh_path(beside.with_name(f"{beside.name}.scratch"))
    folder.mkdir()
    try:
        yield folder
    finally:
        _remove(folder)
