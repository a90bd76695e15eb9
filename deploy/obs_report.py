"""Observations recorded on a robot (or by ``robolearn eval --record``) against what the policy saw
in training (the contract's ``obs.terms[i].stats``): ``robolearn obs-report EXPORT_DIR LOG.npz``.

The first question after a failure on the robot is "did the robot see what the simulator showed
it?". Per term the report gives the training and the recorded distribution and what a difference
usually means:

* **scaled** - the recorded values' typical magnitude is ``k`` times training's (k >= 4 or <= 1/4):
  units (mm for m, degrees for radians, a lidar in cm), or a scaling the robot side applies twice;
* **flipped** - an element's mean has the opposite sign of training's, both a quarter std or more from zero
  an axis convention (y left vs right, a yaw sign, a reversed scan direction);
* **normalised** - mean ~0 and std ~1 where training's are not: the robot side normalises
  although the graph does (``normalized_in_graph``);
* **stuck** - a value that varied in training is constant: a sensor that does not update;
* **out of range** - more than 1 % of steps lie outside the interval ``PolicyRunner``'s health
  check allows (``sigma`` training standard deviations around the mean, or the training range).

The log is an ``.npz`` with ``obs`` (steps, obs_dim) in contract order, or one array per term
name ((steps, width), or (steps, H, W) for an image). Plain numpy (no torch); the PNG needs
matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robolearn.deploy.contract import CONTRACT_FILE, ContractError, loads
from robolearn.deploy.runner import HEALTH_SIGMA, allowed_range

SCALE_FACTOR = 4.0  # typical magnitude this many times training's (or 1 / it): "scaled"
OUTSIDE_SHARE = 0.01  # steps out of range above this share: "out of range"


class ObsLogError(ValueError):
    """An observation log that does not fit the contract (one line, naming the file and the key)."""


def read_log(path: str | Path, contract: dict[str, Any]) -> dict[str, np.ndarray]:
    """The log's observations per contract term, each ``(steps, width)`` float64."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ObsLogError(f"{path}: not a readable .npz observation log ({err})") from None
    terms = contract["obs"]["terms"]
    with data:
        if "obs" in data.files:
            obs = np.asarray(data["obs"], np.float64)
            if obs.ndim != 2 or obs.shape[1] != contract["obs"]["dim"]:
                raise ObsLogError(f"{path}: 'obs' has shape {obs.shape}, the policy reads (steps, "
                                  f"{contract['obs']['dim']})")
            out, start = {}, 0
            for term in terms:
                out[term["name"]] = obs[:, start:start + term["width"]]
                start += term["width"]
            return out
        missing = [term["name"] for term in terms if term["name"] not in data.files]
        if missing:
            raise ObsLogError(f"{path}: no 'obs' array and no array for the term(s) {missing} "
                              f"(the log holds {data.files})")
        out = {}
        for term in terms:
            values = np.asarray(data[term["name"]], np.float64)
            values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(-1, 1)
            if values.shape[1] != term["width"]:
                raise ObsLogError(f"{path}: term {term['name']!r} has {values.shape[1]} values per step, the "
                                  f"policy reads {term['width']}")
            out[term["name"]] = values
        lengths = {len(v) for v in out.values()}
        if len(lengths) != 1:
            raise ObsLogError(f"{path}: the terms have different numbers of steps ({sorted(lengths)})")
        return out


def compare_term(term: dict[str, Any], values: np.ndarray, sigma: float) -> dict[str, Any]:
    """One term's recorded values against its training statistics: figures and findings."""
    finite = values[np.isfinite(values).all(axis=1)]
    row: dict[str, Any] = {"term": term["name"], "width": term["width"], "units": term.get("units", ""),
                           "steps": int(len(values)), "nonfinite_steps": int(len(values) - len(finite)),
                           "findings": []}
    if len(finite) == 0:
        row["findings"].append("no finite values")
        return row
    mean, std = finite.mean(axis=0), finite.std(axis=0)
    row.update(recorded_mean=mean.tolist(), recorded_std=std.tolist(), recorded_min=finite.min(axis=0).tolist(),
               recorded_max=finite.max(axis=0).tolist())
    stats = term.get("stats")
    if stats is None:
        if "shape" in term:
            row["findings"] += _image_findings(term, finite)
        return row
    row["training"] = stats
    row["elements"] = term.get("elements") or [str(i) for i in range(term["width"])]
    t_mean, t_std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    scale = np.maximum(t_std, 1e-4)
    lo, hi = allowed_range(stats, sigma)
    outside = ((finite < lo) | (finite > hi)).any(axis=1).mean()
    train_size = float(np.median(np.sqrt(t_mean ** 2 + t_std ** 2)))
    robot_size = float(np.median(np.sqrt(mean ** 2 + std ** 2)))
    ratio = robot_size / train_size if train_size > 1e-9 else float("inf") if robot_size > 1e-9 else 1.0
    row.update(shift_sigma=float(np.max(np.abs(mean - t_mean) / scale)), scale_ratio=ratio,
               outside_share=float(outside))
    names = row["elements"]
    if ratio >= SCALE_FACTOR or ratio <= 1.0 / SCALE_FACTOR:
        row["findings"].append(f"scaled x{ratio:.3g} against training: units ({term.get('units') or 'see the contract'})"
                               f" or a scaling applied twice?")
    flipped = [names[i] for i in range(term["width"])
               if abs(t_mean[i]) > 0.25 * scale[i] and abs(mean[i]) > 0.25 * scale[i] and np.sign(mean[i]) != np.sign(t_mean[i])]
    if flipped and not row["findings"]:
        row["findings"].append(f"sign flipped against training in {', '.join(flipped[:4])}: an axis convention "
                               f"({term.get('frame') or 'see the contract'})?")
    varied = t_std > 1e-3 * np.maximum(np.abs(t_mean), 1.0)
    if len(finite) > 1 and varied.any() and (std[varied] < 1e-6).all():
        row["findings"].append("constant where training varied: a sensor not updating?")
    looks_normalised = (np.abs(mean) < 0.3).all() and (np.abs(std - 1.0) < 0.3).all()
    trained_normalised = (np.abs(t_mean) < 0.3).all() and (np.abs(t_std - 1.0) < 0.3).all()
    if looks_normalised and not trained_normalised and not row["findings"]:
        row["findings"].append("mean ~0 and std ~1 where training's are not: normalised on the robot side? "
                               "(the graph normalises itself)")
    if outside > OUTSIDE_SHARE and not row["findings"]:
        row["findings"].append(f"{outside:.1%} of steps outside the training distribution ({sigma:g} std or the "
                               "training range)")
    return row


def _image_findings(term: dict[str, Any], values: np.ndarray) -> list[str]:
    """An image term: values against the sensor range the contract gives (near / far)."""
    far, invalid = term.get("far"), term.get("invalid_value")
    if far is None:
        return []
    valid = values if invalid is None else values[values != invalid]
    if valid.size and np.median(valid) > 4.0 * far:
        return [f"median {np.median(valid):.3g} beyond the camera's far range {far} {term.get('units', '')}: units?"]
    if valid.size and (valid < 0).mean() > OUTSIDE_SHARE:
        return ["negative depths: invalid pixels not set to the contract's invalid_value?"]
    return []


def obs_report(export_dir: str | Path, log: str | Path, sigma: float = HEALTH_SIGMA) -> dict[str, Any]:
    """Every term of the exported policy's contract compared with the log (see the module docstring)."""
    path = Path(export_dir)
    contract_file = path / CONTRACT_FILE if path.is_dir() else path.with_name(CONTRACT_FILE)
    try:
        text = contract_file.read_text()
    except OSError as err:
        raise ContractError(f"{contract_file}: cannot read the contract ({err.strerror or err})") from None
    contract = loads(text, str(contract_file))
    values = read_log(log, contract)
    rows = [compare_term(term, values[term["name"]], sigma) for term in contract["obs"]["terms"]]
    with_stats = any("stats" in term for term in contract["obs"]["terms"])
    return {"policy": str(export_dir), "log": str(log), "task": contract["task"], "sigma": sigma,
            "steps": rows[0]["steps"] if rows else 0, "has_training_stats": with_stats, "terms": rows,
            "suspect_terms": [row["term"] for row in rows if row["findings"]]}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"obs-report: {report['log']} ({report['steps']} steps) against {report['policy']} ({report['task']})"]
    if not report["has_training_stats"]:
        lines.append("the contract has no training statistics (exported before they were recorded, or a policy "
                     "without an observation normaliser): re-export to compare")
    lines.append(f"{'term':16s}{'units':>20s}{'shift (std)':>13s}{'scale':>9s}{'outside':>9s}  finding")
    for row in report["terms"]:
        shift = f"{row['shift_sigma']:.2f}" if "shift_sigma" in row else "-"
        scale = f"x{row['scale_ratio']:.3g}" if "scale_ratio" in row else "-"
        outside = f"{row['outside_share']:.1%}" if "outside_share" in row else "-"
        lines.append(f"{row['term']:16s}{row['units'][:19]:>20s}{shift:>13s}{scale:>9s}{outside:>9s}  "
                     f"{'; '.join(row['findings']) or 'ok'}")
    suspects = report["suspect_terms"]
    lines.append(f"suspect terms: {', '.join(suspects)}" if suspects else "every term looks like training")
    return "\n".join(lines)


def plot_report(report: dict[str, Any], png: str | Path) -> Path:
    """One panel per vector term: per value the training band (min-max light, mean +- std dark)
    and the recorded mean +- std (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["terms"] if "training" in row]
    cols = min(3, max(1, len(rows)))
    lines = max(1, (len(rows) + cols - 1) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 2.6 * lines), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows):
        ax.set_visible(True)
        s, x = row["training"], np.arange(row["width"])
        t_mean, t_std = np.asarray(s["mean"]), np.asarray(s["std"])
        if s.get("min") is not None:
            ax.fill_between(x, s["min"], s["max"], step="mid", color="tab:blue", alpha=0.15, label="training min-max")
        ax.fill_between(x, t_mean - t_std, t_mean + t_std, step="mid", color="tab:blue", alpha=0.4,
                        label="training mean +- std")
        mean, std = np.asarray(row["recorded_mean"]), np.asarray(row["recorded_std"])
        ax.errorbar(x, mean, yerr=std, fmt="o", color="tab:red", ms=3, lw=1, label="recorded mean +- std")
        ax.set_title(f"{row['term']} [{row['units']}]" + ("  << " + row["findings"][0][:40] if row["findings"] else ""),
                     fontsize=8, color="tab:red" if row["findings"] else "black")
        if row["width"] <= 12:
            ax.set_xticks(x, row["elements"], rotation=30, ha="right")
        ax.tick_params(labelsize=7)
    if rows:
        axes.flat[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png

