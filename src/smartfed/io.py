"""Atomic file writes: a reader sees the old file or the new one, never a torn one, even after a power
cut (the data is fsynced before the rename, the folder after it). Files get the mode the umask gives,
not the 0600 of a temporary file. Paths written into files others read are shown without this machine's
home or working folder (`shown_path`)."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; fsync it and rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _umask_mode())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_folder(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put the finished folder `tmp` at `out` as a whole: everything in it fsynced, the old `out` moved
    aside and removed only after the rename, the parent fsynced. Readers see the old folder, the new one,
    or (for a call cut between the two renames) none, never a mix."""
    tmp, out = Path(tmp), Path(out)
    for path in tmp.rglob("*"):
        _fsync(path, directory=path.is_dir())
    _fsync(tmp, directory=True)
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    _fsync(out.parent, directory=True)
    if old.exists():
        shutil.rmtree(old)


def shown_path(path: str | os.PathLike) -> str:
    """`path` as a file others read should name it: from the working folder when inside it, from `~`
    when inside the home folder (the deeper of the two wins; `/` is never a root), else absolute."""
    path = Path(os.path.abspath(path))  # absolute, `..` resolved
    roots = []
    try:
        roots.append((Path.cwd(), ""))
    except OSError:  # the working folder was removed
        pass
    try:
        roots.append((Path.home(), "~/"))
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        pass
    for root, prefix in sorted(roots, key=lambda r: len(r[0].parts), reverse=True):
        if len(root.parts) > 1 and path != root and path.is_relative_to(root):
            return prefix + str(path.relative_to(root))
    return str(path)
