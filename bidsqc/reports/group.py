"""The group page (``group_desc-qc_T1w.html``): every scan of the group table, its thumbnail
and report links, and the distributions of p_bad and the native scores with their thresholds."""

import json
from pathlib import Path

import numpy as np

from ..outputs import atomic_write_text, derivative_paths
from ..scores import SCORE_COLUMNS
from .render import group_report, relative_href

GROUP_PAGE = "group_desc-qc_T1w.html"


def _decision(output_dir, rows):
    """(threshold, band, calibrations, artifacts) from the first finished scan's QC JSON and
    its model card (where the model folder is still there)."""
    from ..model.card import read_card

    for row in rows:
        if row.get("qc") in ("error", None):
            continue
        path = derivative_paths(output_dir, row["source_file"], "x", "2")["json"]
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        calibrations, artifacts = {}, []
        model_dir = (record.get("provenance") or {}).get("model_dir")
        try:
            card = read_card(model_dir)
            calibrations = {k: v for k, v in (card.get("detectors") or {}).items()
                            if isinstance(v, dict) and "threshold" in v}
            artifacts = list(card.get("artifacts") or [])
        except Exception:  # noqa: BLE001 (a moved or removed model folder: no score thresholds drawn)
            pass
        return record.get("threshold"), record.get("uncertain_band"), calibrations, artifacts
    return None, None, {}, []


def _json_path(output_dir, source_file):
    return derivative_paths(output_dir, source_file, "x", "2")


def histograms(rows, threshold, band, calibrations):
    """{title: PNG} of p_bad (threshold and uncertain band drawn) and of each native score
    (its calibrated threshold and clean range drawn), over the rated scans."""
    from .figures import _png, _pyplot

    plt = _pyplot()
    out = {}
    series = [("p_bad", "p_bad", threshold, band, False)]
    for name, column in SCORE_COLUMNS.items():
        cal = calibrations.get(name)
        series.append((column, column, cal["threshold"] if cal else None,
                       (cal["low"], cal["high"]) if cal else None, True))
    for title, column, cut, zone, log in series:
        values = np.array([float(r[column]) for r in rows if r.get(column) not in (None, "", "n/a")])
        if values.size == 0:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.2))
        positive = values[values > 0]
        if log and positive.size == values.size and positive.size:
            bins = np.geomspace(positive.min(), max(positive.max(), positive.min() * 1.01), 30)
            ax.set_xscale("log")
        else:
            bins = 30
        ax.hist(values, bins=bins, color="#5b7db1")
        if zone:
            ax.axvspan(zone[0], zone[1], color="#f3d27a", alpha=0.5, lw=0)
        if cut is not None:
            ax.axvline(cut, color="#c62828", lw=1.2)
        ax.set_title(f"{title} ({values.size} scans)", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        out[title] = _png(fig)
    return out


def write_group_report(output_dir, rows):
    """Write the group page into ``output_dir`` from the group table's ``rows``; returns its path."""
    output_dir = Path(output_dir)
    page = output_dir / GROUP_PAGE
    threshold, band, calibrations, artifacts = _decision(output_dir, rows)
    links = []
    for row in rows:
        paths = _json_path(output_dir, row["source_file"])
        links.append({key: relative_href(page, paths[key]) if paths[key].exists() else None
                      for key in ("report", "thumbnail")})
    html = group_report(rows, links, threshold=threshold, band=band, artifacts=artifacts,
                        store=str(output_dir.resolve()), histograms=histograms(rows, threshold, band, calibrations))
    atomic_write_text(page, html)
    return page
