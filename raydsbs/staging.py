"""Every stage output is written all or nothing: aside, then renamed into place in one step.

    with written_whole(run.corpus) as folder:      # a fresh folder beside corpus/
        write the split files into folder
    # corpus/ now exists, whole; after an error (or a kill) it does not exist at all

A stage skips its work when its output exists, so an output must never exist
half-written: a rerun would take it as done. The staging path lies beside the
target (the same file system, so the rename is atomic) and is named after the
writing host and process; a later writer on the same host removes what a
killed writer left. When two writers race for the same output (two sweep
trials tokenizing the same rows), the first rename wins and the second
writer's copy is dropped.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from raydsbs.failpoints import passing

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


@contextmanager
def written_whole(target: Path, folder: bool = True, replace: bool = False) -> Iterator[Path]:
    """Yields a staging path beside ``target`` (a fresh folder, or the path of a file to write); when the block
    ends without an error, it becomes ``target`` by one rename. ``replace``: an existing ``target`` is replaced
    (a file: atomically); otherwise, if ``target`` exists by then (another writer finished first), it is kept
    and this copy dropped. After an error nothing of this attempt is left."""
    target = Path(target)
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
def scratch_folder(beside: Path) -> Iterator[Path]:
    """A working folder beside ``beside`` for the block's own use, removed when the block ends (after a kill,
    by the next block that asks for one)."""
    beside = Path(beside)
    folder = _fresh_path(beside.with_name(f"{beside.name}.scratch"))
    folder.mkdir()
    try:
        yield folder
    finally:
        _remove(folder)
