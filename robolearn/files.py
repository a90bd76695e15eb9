"""Writing files that a crash cannot truncate and that other users can read.

:func:`write_atomic` writes ``<dir>/.<name>.<random>.tmp`` (created with ``os.open(..., 0o666)``, so
the process umask and any default ACL decide its mode exactly as they do for ``open(path, "w")``;
``tempfile.mkstemp`` would make it 0600), fsyncs it, renames it over ``path`` with ``os.replace``
and fsyncs the directory. Readers see the old file or the new one, never a partial one. On any
failure, ``KeyboardInterrupt`` included, the temp file is removed and the old file is left as it
was. :func:`temp_files` lists the temp files a killed process (SIGKILL, power loss) left behind.

Errors: an ``OSError`` of the file system (disk full, permission denied, a parent that is a file)
is raised as :class:`FileWriteError`, an ``OSError`` whose one-line message names the path and the
system's reason, ``<path>: cannot write (No space left on device)``; ``errno`` and ``strerror``
are those of the original error. Anything else a writer callable raises (a ``ValueError``, a
``KeyboardInterrupt``) propagates unchanged, after the cleanup.

:func:`check_writable_dir` answers "can I write here?" before expensive work (training, a parity
check): it creates the directory if needed, creates and removes a file in it, and removes again
the directories it created, so it leaves nothing behind.

No torch here: the onboard side may use this module.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

#: what writing a file needs: its bytes, or a callable that writes them to a binary handle
Writer = Union[bytes, Callable[[BinaryIO], None]]
TEMP_SUFFIX = ".tmp"
#: os.open mode of new files before the umask, the same as builtin open()
NEW_FILE_MODE = 0o666


class FileWriteError(OSError):
    """A file or directory could not be written; ``str()`` is one line naming the path and reason."""

    def __init__(self, path: str | Path, err: OSError, what: str = ""):
        reason = err.strerror or str(err) or type(err).__name__
        super().__init__(err.errno, reason, str(path))
        self.path = Path(path)
        self.what = what

    def __str__(self) -> str:
        where = f" {self.what} here" if self.what else ""
        return f"{self.path}: cannot write{where} ({self.strerror})"


def write_atomic(path: str | Path, data: Writer) -> Path:
    """Replace ``path`` with ``data`` (bytes, or a callable writing to a binary handle) atomically.

    Missing parent directories are created. Returns ``path``; raises :class:`FileWriteError` for a
    file-system error and re-raises anything else after removing the temp file (see module doc).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as err:
        raise FileWriteError(path, err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, FileWriteError):
            raise FileWriteError(path, err) from None
        raise
    _fsync_dir(path.parent)
    return path


def temp_files(path: str | Path) -> list[Path]:
    """Temp files of :func:`write_atomic` for ``path`` (left by a killed writer), oldest first."""
    path = Path(path)
    found = path.parent.glob(f".{_glob_escape(path.name)}.*{TEMP_SUFFIX}")
    return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime)


def check_writable_dir(path: str | Path, what: str = "") -> Path:
    """Check that files can be created in directory ``path`` (made if missing) and leave no trace.

    Raises :class:`FileWriteError` (``<path>: cannot write <what> here (<reason>)``) when ``path``
    is a file, cannot be created or does not accept a new file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileWriteError(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), what)
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_temp(path / "write-probe")
        os.close(fd)
        probe.unlink()
    except OSError as err:
        raise FileWriteError(path, err, what) from None
    finally:
        for directory in created:  # deepest first
            try:
                directory.rmdir()
            except OSError:
                break
    return path


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.tmp`` beside ``path``, opened for writing (mode as open())."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(path.parent))


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some file systems cannot fsync a directory, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
