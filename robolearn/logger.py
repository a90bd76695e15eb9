"""Training logs: ``metrics.csv`` (one row per iteration), TensorBoard events, and the live progress
display (one rewritten status line on a terminal, plain log lines otherwise)."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import IO, Any

#: the columns every run writes first, in this order; task and ADR metrics follow
CORE_COLUMNS = ("iteration", "env_steps", "wall_s", "steps_per_s", "return_mean", "success_rate",
                "episode_len", "policy_loss", "value_loss", "entropy", "kl", "lr", "clip_fraction")


class MetricsLogger:
    """Appends rows to ``run_dir/metrics.csv`` and scalars to ``run_dir/tb``.

    The columns are the first row's (or the existing file's when a run resumes); a row with keys
    the file lacks (a resumed run that added a constraint or a reward term) widens the file, the
    earlier rows left blank there.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = run_dir / "metrics.csv"
        self.columns: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open() as handle:
                self.columns = next(csv.reader(handle))
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def log(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            extra = [key for key in row if key not in CORE_COLUMNS]
            self.columns = [*CORE_COLUMNS, *extra]
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        elif missing := [key for key in row if key not in self.columns]:
            self._widen(missing)
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_fmt(row.get(key)) for key in self.columns])
        if self._writer is not None:
            step = int(row["env_steps"])
            for key, value in row.items():
                if key not in ("iteration", "env_steps") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(_tb_tag(key), value, step)

    def _widen(self, keys: list[str]) -> None:
        """Rewrite the file with ``keys`` appended to its columns (through a temporary file, so an
        interruption leaves the old one whole)."""
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        self.columns = [*self.columns, *keys]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(row + [""] * (len(self.columns) - len(row)) for row in rows)
        tmp.replace(self.path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _tb_tag(key: str) -> str:
    if "/" in key:
        return key
    if key in ("return_mean", "success_rate", "episode_len"):
        return f"episode/{key}"
    if key in ("policy_loss", "value_loss", "entropy", "kl", "lr", "clip_fraction"):
        return f"train/{key}"
    if key in ("steps_per_s", "wall_s"):
        return f"perf/{key}"
    return f"task/{key}"


class QuietStream:
    """A progress stream that shows nothing (ranks other than 0 of data-parallel training)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class ProgressDisplay:
    """Iteration, steps/s, mean return, success rate and ETA.

    On a terminal a status line is rewritten in place and a permanent line is printed every
    ``log_interval`` iterations; elsewhere (a file, CI) only the permanent lines are printed.
    """

    def __init__(self, log_interval: int = 1, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.log_interval = log_interval
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_live = 0.0

    def update(self, row: dict[str, Any], fraction_done: float, extra: str = "") -> None:
        line = self.format(row, fraction_done, extra)
        if row["iteration"] % self.log_interval == 0:
            self._write(line, permanent=True)
        elif self.live and time.monotonic() - self._last_live > 0.2:
            self._write(line, permanent=False)

    def message(self, text: str) -> None:
        self._write(text, permanent=True)

    def _write(self, line: str, permanent: bool) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + line + ("\n" if permanent else ""))
            self._last_live = time.monotonic()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    @staticmethod
    def format(row: dict[str, Any], fraction_done: float, extra: str = "") -> str:
        wall = row["wall_s"]
        eta = wall * (1 - fraction_done) / fraction_done if fraction_done > 0 else float("nan")
        success = row.get("success_rate")
        ret = row.get("return_mean")
        parts = [
            f"it {row['iteration']:>5}",
            f"steps {row['env_steps']:>10,}",
            f"{row['steps_per_s']:>8,.0f} steps/s",
            f"return {ret:>7.2f}" if _finite(ret) else "return     n/a",
            f"success {success:>6.1%}" if _finite(success) else "success   n/a",
            f"elapsed {_hms(wall)}",
            f"ETA {_hms(eta)}" if _finite(eta) else "ETA --:--",
        ]
        return " | ".join(parts) + (f" | {extra}" if extra else "")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
