"""The run directory of one training run: ``config.yaml``, ``metrics.csv``, ``tb/``, ``checkpoints/``.

A fresh training *claims* a directory that holds no run: it creates ``config.yaml`` exclusively, so
two trainings never write into one directory and an earlier run is never overwritten. The default
directory ``runs/<experiment>/<timestamp>`` takes a suffix (``-2``, ``-3``, ...) when another
training claimed it in the same second. A resumed run *reopens* its directory once it knows the
iteration it continues from: rows of ``metrics.csv`` past that iteration (logged after the last
checkpoint, before a crash) are dropped, and temp files of interrupted checkpoint writes removed.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

from robolearn.checkpoint import CHECKPOINT_DIR
from robolearn.files import TEMP_SUFFIX, write_atomic

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
#: any of these makes a directory a run
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR)
#: the highest ``-N`` suffix tried for a default run directory another run holds
MAX_SUFFIX = 999


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (one-line message naming it)."""


def default_run_dir(experiment: str) -> Path:
    return Path("runs") / experiment / time.strftime("%Y%m%d-%H%M%S")


def claim_run_dir(path: str | Path, config_text: str, unique: bool = False) -> Path:
    """Make ``path`` this run's directory and write its ``config.yaml``; returns the directory.

    ``unique`` (the default timestamped directory): if another run holds ``path``, use the first
    free ``path-2``, ``path-3``, ... instead of refusing."""
    for candidate in _names(Path(path)):
        try:
            _claim(candidate, config_text)
            return candidate
        except RunDirError:
            if not unique or not _holds_run(candidate):
                raise
    raise RunDirError(f"{path}: no free run directory name (tried {MAX_SUFFIX - 1} suffixes)")


def reserve_run_dir(path: str | Path) -> Path:
    """Create a new empty directory at ``path`` (or ``path-2``, ...), for a launcher that hands it
    to its workers (who claim it)."""
    for candidate in _names(Path(path)):
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError(f"{candidate}: cannot create the run directory ({err.strerror})") from None
    raise RunDirError(f"{path}: no free run directory name (tried {MAX_SUFFIX - 1} suffixes)")


def _names(path: Path) -> Iterator[Path]:
    """``path``, then ``path-2``, ``path-3``, ... up to ``-MAX_SUFFIX``."""
    yield path
    for suffix in range(2, MAX_SUFFIX + 1):
        yield path.with_name(f"{path.name}-{suffix}")


def _claim(path: Path, config_text: str) -> None:
    _check_is_directory(path)
    if _holds_run(path):
        raise RunDirError(f"{path}: already holds a run; continue it with --resume {path}, or train into a new "
                          "--run-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with (path / CONFIG_FILE).open("x") as handle:  # exclusive: two trainings cannot both claim it
            handle.write(config_text)
    except FileExistsError:
        raise RunDirError(f"{path}: another training claimed this run directory; choose a new --run-dir") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot create the run directory ({err.strerror})") from None


def reopen_run_dir(path: str | Path, iteration: int, config_text: str) -> None:
    """Prepare a resumed run's directory to continue from ``iteration``: drop later metrics rows,
    remove stale checkpoint temp files, record the (possibly changed) config."""
    path = Path(path)
    _check_is_directory(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _trim_metrics(path / METRICS_FILE, iteration)
        for stale in (path / CHECKPOINT_DIR).glob(f".*{TEMP_SUFFIX}"):  # left by a writer that was killed
            stale.unlink(missing_ok=True)
        write_atomic(path / CONFIG_FILE, config_text.encode())
    except OSError as err:
        raise RunDirError(f"{path}: cannot write to the run directory ({err.strerror})") from None


def _trim_metrics(path: Path, iteration: int) -> None:
    """Keep the header and the rows of iterations up to ``iteration``."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or "iteration" not in rows[0]:
        return
    column = rows[0].index("iteration")
    kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[column])) <= iteration]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    write_atomic(path, text.getvalue().encode())


def _check_is_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory (the run directory must be one)")


def _holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)
