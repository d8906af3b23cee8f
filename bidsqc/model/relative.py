"""Dataset-relative verdicts for the group level: most scans of a study are usable, so a scan is
judged against the other scans of its own acquisition (the same protocol on the same scanner)
as well as against the training scans.

Per acquisition with at least MIN_ACQUISITION_SCANS rated scans, the robust centre (median)
and spread (1.4826 x median absolute deviation, at least the column's SPREAD_FLOOR) of the
network's log-odds and of each native detector score give each scan a robust z-score per
column. A scan fails (``qc_dataset``) where its largest z-score reaches OUTLIER_Z and its
participant verdict is not a pass: it stands out from its acquisition and the training-
calibrated evidence doubts it too. Every other scan passes, so the dataset-relative verdict
clears scans that only differ from the training study, and never fails a scan the participant
level passes. Below the minimum the participant verdict is kept and the note says so.
docs/usage.md (group level) describes the columns.
"""

import warnings

import numpy as np

#: the fewest rated scans of one acquisition for dataset-relative verdicts
MIN_ACQUISITION_SCANS = 10
#: the robust z-score from which a scan stands out from its acquisition: the modified z-score
#: of Iglewicz and Hoaglin's outlier rule; with six one-sided columns a clean scan from a normal
#: population reaches it about once in 700 scans
OUTLIER_Z = 3.5
#: the columns compared within an acquisition (higher is worse for each) and the least spread
#: each is given, so that an acquisition whose scans agree closely (a ghost score of 0 on every
#: skull-stripped scan) does not turn a difference no detector would notice into an outlier:
#: a tenth of the top of each detector's clean training range (``low`` in the model card of
#: bidsqc-418fc49cb11f) and
#: a quarter of a log-odds unit for the network
RELATIVE_COLUMNS = {"network_logit": 0.25, "spike_score": 0.17, "ghost_score": 0.003, "thick_score": 0.02,
                    "slice_score": 0.11, "noise_score": 0.0045}
#: the sidecar fields that, with the acquisition entity and the voxel size, define a protocol
PROTOCOL_FIELDS = ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength")
MAD_TO_SD = 1.4826


def acquisition_key(row):
    """The protocol of a group-table row: its ``acq`` entity, scanner make and model, field
    strength (from the BIDS sidecar, where the participant level found one) and voxel size
    rounded to 0.1 mm; 'n/a' for what is unknown."""
    parts = [f"acq-{row.get('acq_id') or 'n/a'}"]
    parts += [str(row.get(field) or "n/a") for field in ("manufacturer", "model_name", "field_strength")]
    voxels = str(row.get("voxel_size_mm") or "n/a")
    try:
        voxels = "x".join(f"{float(v):.1f}" for v in voxels.split("x"))
    except ValueError:
        pass
    return "|".join(parts + [voxels])


def _value(row, column):
    if column == "network_logit":
        try:
            p = float(row.get("p_bad_network"))
        except (TypeError, ValueError):
            return np.nan
        p = min(max(p, 1e-4), 1 - 1e-4)
        return float(np.log(p / (1 - p)))
    try:
        return float(row.get(column))
    except (TypeError, ValueError):
        return np.nan


def relative_verdicts(rows, min_scans=MIN_ACQUISITION_SCANS, outlier_z=OUTLIER_Z):
    """Add the dataset-relative columns to group-table ``rows`` (dicts, changed in place):
    ``acquisition``, ``n_acquisition``, one ``z_<column>`` per RELATIVE_COLUMNS, ``z_max``,
    ``qc_dataset`` and ``qc_dataset_reason``. Rows marked ``error`` keep ``error``. Returns
    the rows."""
    groups = {}
    for row in rows:  # every column not measured below stays n/a
        row.update(acquisition=acquisition_key(row), n_acquisition="n/a", **{f"z_{c}": "n/a" for c in RELATIVE_COLUMNS},
                   z_max="n/a", qc_dataset="error", qc_dataset_reason="n/a")
        if row.get("qc") != "error":
            groups.setdefault(row["acquisition"], []).append(row)
    for members in groups.values():
        n = len(members)
        for row in members:
            row["n_acquisition"] = n
        if n < min_scans:
            for row in members:
                row.update(qc_dataset=row.get("qc", "error"),
                           qc_dataset_reason=f"{row.get('qc')}: the participant verdict; the acquisition has {n} "
                                             f"rated scan(s), fewer than the {min_scans} a dataset-relative verdict "
                                             "needs")
            continue
        values = np.array([[_value(r, c) for c in RELATIVE_COLUMNS] for r in members])
        with warnings.catch_warnings():  # a column no scan has (a card without detectors) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmedian(values, axis=0)
            spread = np.maximum(MAD_TO_SD * np.nanmedian(np.abs(values - centre), axis=0),
                                list(RELATIVE_COLUMNS.values()))
        z = (values - centre) / spread
        for row, scores in zip(members, z):
            row.update({f"z_{c}": "n/a" if np.isnan(s) else f"{s:.2f}" for c, s in zip(RELATIVE_COLUMNS, scores)})
            if np.all(np.isnan(scores)):
                row.update(qc_dataset=row.get("qc"),
                           qc_dataset_reason=f"{row.get('qc')}: the participant verdict; no score to compare")
                continue
            top = int(np.nanargmax(scores))
            row["z_max"] = f"{scores[top]:.2f}"
            column = list(RELATIVE_COLUMNS)[top]
            if scores[top] >= outlier_z and row.get("qc") != "pass":
                row["qc_dataset"] = "fail"
                row["qc_dataset_reason"] = (f"fail: {column} stands out from the {n} scans of its acquisition "
                                            f"(robust z {scores[top]:.1f} >= {outlier_z:g}) and the participant "
                                            f"verdict is {row.get('qc')}")
            elif scores[top] >= outlier_z:
                row["qc_dataset"] = "pass"
                row["qc_dataset_reason"] = (f"pass: {column} stands out from the {n} scans of its acquisition "
                                            f"(robust z {scores[top]:.1f}), but every score is inside what the "
                                            "training scans call clean (participant verdict pass)")
            else:
                row["qc_dataset"] = "pass"
                row["qc_dataset_reason"] = (f"pass: no score stands out from the {n} scans of its acquisition "
                                            f"(largest robust z {scores[top]:.1f}, {column}; outliers from "
                                            f"{outlier_z:g})")
    return rows
