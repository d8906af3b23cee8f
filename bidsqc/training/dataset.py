"""Build a cached training set: clean scans, clean variations and simulated artifacts,
all through the inference preprocessing (``bidsqc.preprocessing.pipeline.preprocess``).

Cache layout (``cache_dir``): ``volumes/<key>.npy`` float16 (model grid) and
``manifest.tsv`` with one row per volume. A rebuild skips volumes already cached,
so a stopped build resumes.
"""

import csv
import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..artifacts import ARTIFACTS, apply_artifact, sample_params
from ..artifacts.shift import SHIFT_RANGES, apply_study, sample_study
from ..artifacts.simulators import ANISOTROPIC_RANGE, CLEAN_RANGES, RANGES, sample_anisotropic, sample_clean_variation
from ..model.card import file_checksum, write_json_atomic
from .geometry import JITTER_RANGES, grid_move, jitter_move

LOGGER = logging.getLogger("bidsqc")

MANIFEST_COLUMNS = ["key", "subject", "source_file", "variant", "artifact", "severity", "label",
                    "params", "reg_quality", "skull_stripped", "volume", "move_seed", "shift"]


def plan_variants(scans, n_clean_variants=2, severities=("mild", "severe"), p_severe=0.6, seed=0,
                  every_severity=False, artifacts=ARTIFACTS, raw_scan_variation=False, shift_p=0.0):
    """One job per training volume: each good scan as is, ``n_clean_variants`` clean
    variations and one simulated version per artifact (severity drawn, P(severe)=p_severe;
    with ``every_severity`` one per artifact and severity); scans rated bad by a user
    enter as they are. With ``raw_scan_variation`` the clean variations also carry raw-scan
    noise and sharpening; ``shift_p``: see ``add_shifts``. Returns a list of job dicts."""
    rng = np.random.default_rng(seed)
    jobs = []
    for scan in scans:
        base = {"subject": scan["subject"], "source_file": str(scan["source_file"])}
        if scan.get("label", "good") == "bad":
            jobs.append(dict(base, variant="rated", artifact=scan.get("artifact") or "n/a",
                             severity="rated", label=1.0, seed=None))
            continue
        jobs.append(dict(base, variant="original", artifact="none", severity="none", label=0.0, seed=None))
        for i in range(n_clean_variants):
            jobs.append(dict(base, variant=f"clean{i}", artifact="clean", severity="none", label=0.0,
                             seed=int(rng.integers(2 ** 31)), raw_scan=bool(raw_scan_variation)))
        for artifact in artifacts:
            drawn = severities[-1] if rng.random() < p_severe else severities[0]
            for severity in (severities if every_severity else (drawn,)):
                jobs.append(dict(base, variant=f"{artifact}-{severity}" if every_severity else artifact,
                                 artifact=artifact, severity=severity, label=1.0,
                                 seed=int(rng.integers(2 ** 31))))
    return add_shifts(jobs, shift_p, seed)


def add_shifts(jobs, p, seed=0):
    """With ``p`` > 0 (``bidsqc-train --shift-variation``), give each job but the subjects'
    ``original`` volumes and user-rated scans, with probability ``p``, a ``shift``: one or two
    study differences (``bidsqc.artifacts.shift.sample_study``: voxel size, contrast, 1.5 T
    noise, atrophy, field of view, intensity scale) applied to the scan before its clean
    variation or artifact, so that neither class is one study's look. Drawn from their own
    generator, in the same way whatever ``p``, so the jobs' other seeds do not change."""
    rng = np.random.default_rng([seed, 0x7368696674])
    for job in jobs:
        draw, shift_seed = rng.random(), int(rng.integers(2 ** 31))
        if p > 0 and draw < p and job["variant"] not in ("original", "rated"):
            job["shift_seed"] = shift_seed
    return jobs


def job_shift(job, zooms):
    """The job's (or manifest row's) study shift as [[name, params], ...]: a manifest row's
    stored ``shift``, or drawn from its ``shift_seed`` for a scan with voxel sizes ``zooms``;
    [] when it has none."""
    if job.get("shift") not in (None, ""):
        return json.loads(job["shift"]) if isinstance(job["shift"], str) else list(job["shift"])
    if job.get("shift_seed") in (None, ""):
        return []
    return sample_study(np.random.default_rng(int(job["shift_seed"])), zooms)


def _per_good_scan(scans, rng, variants):
    """A job per good scan (a user-rated bad one gets none) and per (variant, artifact,
    severity, extra keys) of ``variants``, each seeded from ``rng`` in that order."""
    jobs = []
    for scan in scans:
        if scan.get("label", "good") == "bad":
            continue
        for variant, artifact, severity, extra in variants:
            jobs.append({"subject": scan["subject"], "source_file": str(scan["source_file"]), "variant": variant,
                         "artifact": artifact, "severity": severity, "label": 1.0,
                         "seed": int(rng.integers(2 ** 31)), **extra})
    return jobs


def naming_mild_jobs(scans, seed=0, artifacts=ARTIFACTS):
    """One mild version of every artifact per good scan, for fitting the artifact naming
    (``bidsqc.training.calibrate.fit_naming``) on the borderline scans that users are sent to look
    at, not only on severe ones; never used to train the network or calibrate a detector.
    Drawn from their own generator (``[seed, 2]``), so the training plan keeps its seeds."""
    return _per_good_scan(scans, np.random.default_rng([seed, 2]),
                          [(f"{a}-mild", a, "mild", {}) for a in artifacts])


def naming_crop_jobs(scans, seed=0):
    """A mild and a severe missing coverage per good scan, cut off the array rather than
    zeroed (``coverage_crop``: a field of view that ends inside the head, as a scanner
    writes it), for fitting the artifact naming only. The zeroed slab of the training
    volumes leaves a break into zero planes; a real field of view that ends in the brain
    leaves none, and without these the naming took it for wrap-around. Their own generator
    (``[seed, 3]``), so every other volume keeps its seed and cache key."""
    return _per_good_scan(scans, np.random.default_rng([seed, 3]),
                          [(f"missing_coverage-crop-{s}", "missing_coverage", s, {"crop": True})
                           for s in ("mild", "severe")])


def naming_jobs(scans, seed=0, artifacts=ARTIFACTS):
    """The volumes the artifact naming is fit on besides the plan's severe ones:
    ``naming_mild_jobs``, then ``naming_crop_jobs`` where missing coverage is planned."""
    jobs = naming_mild_jobs(scans, seed=seed, artifacts=artifacts)
    return jobs + (naming_crop_jobs(scans, seed=seed) if "missing_coverage" in artifacts else [])


def add_moves(jobs, p, seed=0):
    """With ``p`` > 0 (``bidsqc-train --registration-jitter``), give each job but the
    subjects' ``original`` volumes, with probability ``p``, a ``move_seed``: the job's scan is
    then moved by a random affine (``bidsqc.training.geometry.jitter_move``) inside its one
    resampling at registration. A move drawn on the grid after caching resamples a second
    time, which takes away more fine texture than mild noise adds (docs/model.md). The
    originals stay unmoved: the subject's background is found on them (``background_maps``).
    Draws come from their own generator, so the jobs' artifact seeds do not change."""
    rng = np.random.default_rng([seed, 0x6D6F7665])
    for job in jobs:
        draw, move_seed = rng.random(), int(rng.integers(2 ** 31))
        if p > 0 and job["variant"] != "original" and draw < p:
            job["move_seed"] = move_seed
    return jobs


def job_move(job, grid_shape, grid_affine):
    """The job's (or manifest row's) move for ``preprocess``, or None when it has none."""
    if job.get("move_seed") in (None, ""):
        return None
    return grid_move(*jitter_move(job["move_seed"]), grid_shape, grid_affine)


def assign_keys(jobs, signature):
    """Give planned jobs their cache keys (``key``) under ``signature`` (a grid signature,
    or "native" for native-space volumes); each source scan is checksummed once."""
    checksums = {}
    for job in jobs:
        src = job["source_file"]
        if src not in checksums:
            checksums[src] = file_checksum(src)
        job["key"] = _job_key(job, checksums[src], signature)
    return jobs


def _job_key(job, checksum, signature):
    """Cache key of a job: the source scan, the variant, its seed, the grid signature and
    the parameter ranges its parameters are drawn from (so widening a range rebuilds)."""
    ranges = CLEAN_RANGES if job["artifact"] == "clean" else \
        ANISOTROPIC_RANGE if job["artifact"] == "anisotropic" else RANGES.get(job["artifact"])
    move = []
    if job.get("move_seed") not in (None, ""):
        move = [int(job["move_seed"]), JITTER_RANGES]
    if job.get("shift_seed") not in (None, ""):
        move += ["shift", int(job["shift_seed"]), SHIFT_RANGES]
    text = json.dumps([checksum, job["variant"], job["artifact"], job["severity"], job["seed"], signature, ranges]
                      + ([True] if job.get("raw_scan") else []) + move + (["crop"] if job.get("crop") else []))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


_WORKER = {}


def _init_worker(template_id, grid_shape, grid_affine, mask):
    from ..preprocessing.templates import get_template

    _WORKER.update(template=get_template(template_id), grid_shape=tuple(grid_shape),
                   grid_affine=np.asarray(grid_affine), mask=mask)


def native_image(job):
    """The job's volume in native space (conformed to RAS, artifact applied), and the
    artifact's parameters: drawn from the job's seed, or a manifest row's stored ``params``."""
    from ..preprocessing.conform import conform, load_image

    img, _ = conform(load_image(job["source_file"]), name=job["source_file"])
    shift = job_shift(job, tuple(float(z) for z in img.header.get_zooms()[:3]))
    if shift:
        img = apply_study(img, shift)
    job["shift"] = json.dumps(shift) if shift else ""
    params = {}
    if job["artifact"] not in ("clean", "anisotropic") and job["artifact"] not in ARTIFACTS:
        return img, params
    if job.get("params") not in (None, ""):
        params = json.loads(job["params"]) if isinstance(job["params"], str) else dict(job["params"])
        if not params:
            return img, params
    elif job["seed"] is None:
        return img, params
    elif job["artifact"] == "clean":
        params = sample_clean_variation(np.random.default_rng(job["seed"]), raw_scan=job.get("raw_scan", False))
    elif job["artifact"] == "anisotropic":
        params = sample_anisotropic(np.random.default_rng(job["seed"]))
    else:
        rng = np.random.default_rng(job["seed"])
        data = np.asarray(img.dataobj, np.float32)
        zooms = img.header.get_zooms()[:3]
        # crop: missing coverage cut off the array (naming_crop_jobs)
        params = sample_params(job["artifact"], job["severity"], rng, data, zooms, crop=bool(job.get("crop")))
    return apply_artifact(img, job["artifact"], params), params


def _registration_job(source_file, template_id):
    """template -> scan affine (4x4 list) of a source scan as conformed, as inference registers it."""
    from ..preprocessing.conform import conform, load_image
    from ..preprocessing.register import register_affine
    from ..preprocessing.templates import cached_template

    img, _ = conform(load_image(source_file), name=source_file)
    matrix, _ = register_affine(img, cached_template(template_id))
    return np.round(matrix, 6).tolist()


def registration_table(source_files, cache_dir, template_id, nprocs=2):
    """{source_file: template -> scan affine} of each source scan, registered as it is (the
    artifacts the simulator adds leave the head where it is), cached in
    ``cache_dir``/registrations.json by template and file checksum."""
    path = Path(cache_dir) / "registrations.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    keys = {src: f"{template_id}:{file_checksum(src)}" for src in sorted(set(source_files))}
    todo = [src for src, key in keys.items() if key not in cached]
    if todo:
        LOGGER.info("detectors: registering %d source scans to %s", len(todo), template_id)
        with ProcessPoolExecutor(max_workers=max(1, nprocs)) as pool:
            futures = {pool.submit(_registration_job, src, template_id): src for src in todo}
            for future in futures:
                try:
                    cached[keys[futures[future]]] = future.result()
                except Exception as exc:  # its volumes get no registered scores, and are left out
                    LOGGER.warning("detectors: registering %s failed: %s", futures[future], exc)
        write_json_atomic(path, cached)
    return {src: cached[key] for src, key in keys.items() if key in cached}


def _detector_job(job, only=None, template_to_t1w=None, template_id=None):
    from ..preprocessing.templates import cached_template
    from ..scores import brain_voxels, scores

    img, _ = native_image(job)
    brain = None
    if template_to_t1w is not None:
        brain = brain_voxels(img.affine, template_to_t1w, cached_template(template_id).mask)
    return scores(np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3], only=only, brain=brain)


def detector_table(jobs, cache_dir, nprocs=2, template_id="MNI152NLin6Asym"):
    """Native-space scores (bidsqc.scores.FEATURES) of jobs or manifest rows (each with a
    ``key``), cached in ``cache_dir``/detectors.tsv; returns {key: {feature: score}}. A
    cached row that lacks some current scores (written by an older version) keeps the ones
    it has and gets only the missing ones computed; a score whose definition changed since
    (bidsqc.scores.FEATURE_VERSIONS) has a new column, so an old value is never reused.
    The scores that need the registered brain (bidsqc.scores.REGISTERED) are given the
    ``template_id`` brain as the source scan's registration (``registration_table``) maps it
    into each volume, as inference gives it; a volume whose source failed to register gets
    none of them (and so is left out)."""
    from ..scores import FEATURES, REGISTERED, feature_column

    columns = {f: feature_column(f) for f in FEATURES}  # a score whose definition changed is recomputed
    path = Path(cache_dir) / "detectors.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)  # --detectors-only may be the first use of a cache
    table = {}
    if path.exists():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                table[row["key"]] = {f: float(row[c]) for f, c in columns.items() if row.get(c) not in (None, "")}
    todo = {job["key"]: job for job in jobs if len(table.get(job["key"], {})) < len(FEATURES)}
    LOGGER.info("detectors: %d volumes, %d scored before, %d to score", len(jobs), len(jobs) - len(todo), len(todo))

    def save():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["key"] + list(columns.values()))
            for key, values in table.items():
                writer.writerow([key] + [values.get(f, "") for f in FEATURES])
        os.replace(tmp, path)

    needed = {key: [f for f in FEATURES if f not in table.get(key, {})] for key in todo}
    moves = registration_table([job["source_file"] for key, job in todo.items()
                                if set(REGISTERED) & set(needed[key])], cache_dir, template_id, nprocs=nprocs)
    with ProcessPoolExecutor(max_workers=max(1, nprocs)) as pool:
        futures = {pool.submit(_detector_job, job, needed[key], moves.get(job["source_file"]), template_id): key
                   for key, job in todo.items()}
        for i, future in enumerate(futures, 1):
            key = futures[future]
            try:
                table[key] = dict(table.get(key, {}), **future.result())
            except Exception as exc:  # one unreadable scan never stops the others
                LOGGER.warning("detectors: %s (%s) failed: %s", todo[key]["source_file"], todo[key]["variant"], exc)
            if i % 20 == 0 or i == len(todo):
                LOGGER.info("detectors: %d/%d volumes scored", i, len(todo))
                save()
    return {job["key"]: table[job["key"]] for job in jobs if len(table.get(job["key"], {})) == len(FEATURES)}


def _run_job(job, cache_dir):
    """Simulate (in native space) and preprocess one job; returns a manifest row."""
    from ..preprocessing.pipeline import preprocess

    out = Path(cache_dir) / "volumes" / f"{job['key']}.npy"
    img, params = native_image(job)
    volume, info = preprocess(img, _WORKER["template"], _WORKER["grid_shape"], _WORKER["grid_affine"],
                              _WORKER["mask"], name=job["source_file"],
                              move=job_move(job, _WORKER["grid_shape"], _WORKER["grid_affine"]))
    tmp = out.with_suffix(".tmp.npy")
    np.save(tmp, volume.astype(np.float16))
    os.replace(tmp, out)
    row = {k: job[k] for k in ("key", "subject", "source_file", "variant", "artifact", "severity", "label")}
    row.update(params=json.dumps(params), reg_quality=info["reg_quality"],
               skull_stripped=int(info["skull_stripped"]), volume=str(out.relative_to(cache_dir)),
               move_seed=job.get("move_seed", ""), shift=job.get("shift", ""))
    return row


def build_dataset(scans, cache_dir, template_id, grid_shape, grid_affine, input_mask,
                  n_clean_variants=2, seed=0, nprocs=2, p_severe=0.6, every_severity=False,
                  artifacts=ARTIFACTS, severities=("mild", "severe"), raw_scan_variation=False,
                  skip_artifacts=(), move_p=0.0, naming=False, shift_p=0.0):
    """Build (or resume) the cached training set for ``scans`` (dicts with subject,
    source_file and optional label/artifact); returns the manifest rows. ``move_p``: see
    ``add_moves``; ``shift_p``: see ``add_shifts``. ``skip_artifacts``
    leaves those jobs out after planning, so the other volumes keep their seeds and cache keys.
    ``naming`` adds the ``naming_jobs`` after the plan (their moves drawn after the plan's,
    so the plan's volumes keep their cache keys)."""
    signature = grid_signature(grid_shape, grid_affine, input_mask)
    jobs = plan_variants(scans, n_clean_variants=n_clean_variants, seed=seed, p_severe=p_severe,
                         every_severity=every_severity, artifacts=artifacts, severities=severities,
                         raw_scan_variation=raw_scan_variation, shift_p=shift_p)
    if naming:
        jobs += naming_jobs(scans, seed=seed, artifacts=artifacts)
    jobs = add_moves(jobs, move_p, seed)
    # a user-rated scan stays whatever artifact it was rated with: only simulated volumes are skipped
    jobs = assign_keys([job for job in jobs if job["variant"] == "rated" or job["artifact"] not in skip_artifacts],
                       signature)
    return build_volumes(jobs, cache_dir, template_id, grid_shape, grid_affine, input_mask, nprocs=nprocs)


def grid_signature(grid_shape, grid_affine, input_mask):
    """The cache signature of a model grid: volumes depend on the grid, the input mask and the
    pre-smoothing, so all enter every cache key."""
    from ..preprocessing.pipeline import PRESMOOTH_FWHM_MM

    return hashlib.sha1(np.asarray(grid_affine, np.float64).tobytes() + str(
        (tuple(grid_shape), int(np.asarray(input_mask).sum()), PRESMOOTH_FWHM_MM)).encode()).hexdigest()[:12]


def build_volumes(jobs, cache_dir, template_id, grid_shape, grid_affine, input_mask, nprocs=2):
    """Simulate and preprocess planned ``jobs`` (each with its ``key``, ``assign_keys``) into
    ``cache_dir``, skipping those already cached; returns (manifest rows of the jobs, errors)."""
    cache_dir = Path(cache_dir)
    (cache_dir / "volumes").mkdir(parents=True, exist_ok=True)
    manifest_path = cache_dir / "manifest.tsv"
    done = {}
    if manifest_path.exists():
        with open(manifest_path, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if (cache_dir / row["volume"]).exists():
                    done[row["key"]] = row
    todo = [job for job in jobs if job["key"] not in done]
    LOGGER.info("dataset: %d volumes planned, %d cached, %d to build", len(jobs), len(jobs) - len(todo),
                len(todo))
    rows = dict(done)  # every cached row stays in the manifest, planned or not
    errors = []
    with ProcessPoolExecutor(max_workers=max(1, nprocs), initializer=_init_worker,
                             initargs=(template_id, grid_shape, np.asarray(grid_affine), input_mask)) as pool:
        futures = {pool.submit(_run_job, job, str(cache_dir)): job for job in todo}
        for i, future in enumerate(futures, 1):
            job = futures[future]
            try:
                rows[job["key"]] = future.result()
            except Exception as exc:  # one broken scan never stops the build
                errors.append(f"{job['source_file']} ({job['variant']}): {exc}")
                LOGGER.warning("dataset: %s (%s) failed: %s", job["source_file"], job["variant"], exc)
            if i % 10 == 0 or i == len(todo):
                LOGGER.info("dataset: %d/%d volumes built", i, len(todo))
                _write_manifest(manifest_path, list(rows.values()))
    _write_manifest(manifest_path, list(rows.values()))
    return [rows[j["key"]] for j in jobs if j["key"] in rows], errors


def _write_manifest(path, rows):
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def load_volumes(cache_dir, rows):
    """Stack the cached volumes of ``rows``: (n, *grid) float16."""
    return np.stack([np.load(Path(cache_dir) / row["volume"]) for row in rows])


def read_labels(labels_tsv, root=None):
    """Scans from a ratings TSV: columns source_file, rating (good/bad), optional artifact and
    subject (an artifact of "" or "n/a" is none). Relative source_file paths are relative to
    ``root`` (``bidsqc-train --labels-root``: the BIDS folder, for a TSV exported from the
    reports), else to the TSV's folder; a file that is not there is an error naming its line."""
    scans = []
    base = Path(root).resolve() if root else Path(labels_tsv).resolve().parent
    with open(labels_tsv, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
            if "source_file" not in row or "rating" not in row:
                raise ValueError(f"{labels_tsv}: needs columns source_file and rating")
            rating = row["rating"].strip().lower()
            if rating not in ("good", "bad"):
                raise ValueError(f"{labels_tsv}:{line}: rating {row['rating']!r} is not good or bad")
            path = Path(row["source_file"])
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise ValueError(f"{labels_tsv}:{line}: {path} is not a file" + (
                    "" if root else "; for a TSV exported from the reports, give the BIDS folder with --labels-root"))
            subject = (row.get("subject") or "").strip() or path.name.split("_")[0]
            artifact = (row.get("artifact") or "").strip()
            scans.append({"source_file": str(path), "subject": subject, "label": rating,
                          "artifact": None if artifact in ("", "n/a") else artifact})
    if not scans:
        raise ValueError(f"{labels_tsv}: no rated scans")
    return scans


def scans_from_folder(folder):
    """Every NIfTI under ``folder`` as a presumed-good scan (its subject from sub-<label>)."""
    scans = []
    for path in sorted(Path(folder).rglob("*.nii*")):
        subject = next((p for p in path.name.split("_") if p.startswith("sub-")), path.name.split(".")[0])
        scans.append({"source_file": str(path), "subject": subject, "label": "good"})
    if not scans:
        raise ValueError(f"{folder}: no NIfTI files found")
    return scans
