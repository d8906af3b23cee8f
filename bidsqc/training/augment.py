"""Training-time augmentation on the model grid: contrast, tissue outside the brain of a
skull-stripped scan, random affines and flips, then mixup in ``batches``."""

import numpy as np
from scipy import ndimage

from ..preprocessing.resample import zscore
from .geometry import jitter_move, random_affine, spatial_transform

# --spatial-augment: a random affine (geometry.random_affine) applied on the model grid with
# probability SPATIAL_P to each training volume
SPATIAL_P = 0.8


def smooth_fields(shape, n, rng, sigma=3.0):
    """``n`` smooth random fields in 0..1, (n, *shape) float32, for background filling."""
    fields = []
    for _ in range(n):
        f = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), sigma)
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
        fields.append(f)
    return np.stack(fields).astype(np.float32)


def scalp_layers(background, distance, rng, fields):
    """Layered non-brain tissue for the background voxels of a skull-stripped scan, the way
    it lies around the brain in a raw head: CSF and dura next to the brain, then skull,
    then bright marrow and scalp fat. ``distance`` is each voxel's distance (grid voxels)
    from the subject's brain; layer thicknesses and intensities are drawn, and the layer
    boundaries and brightness are modulated by two smooth random fields, so the layers
    wave and vary as across heads and scanners. Returns (grid) float32, zero off ``background``."""
    wave = fields[rng.integers(len(fields))]
    shade = fields[rng.integers(len(fields))]
    depth = distance + rng.uniform(0.5, 2.0) * (wave - 0.5)
    csf_width, bone_width = rng.uniform(0.3, 1.5), rng.uniform(0.5, 1.5)
    csf, bone, fat = rng.uniform(0.05, 0.4), rng.uniform(0.02, 0.35), rng.uniform(0.4, 1.0)
    layers = np.where(depth < csf_width, csf, np.where(depth < csf_width + bone_width, bone, fat))
    layers = ndimage.gaussian_filter(layers.astype(np.float32), 0.6) * (0.75 + 0.5 * shade)
    return np.where(background, layers, 0).astype(np.float32)


def brain_distance(mask, background):
    """Distance (grid voxels) of every voxel from the subject's brain (``mask`` minus ``background``)."""
    brain = mask & ~background
    if not brain.any():
        return np.zeros(mask.shape, np.float32)
    return ndimage.distance_transform_edt(~brain).astype(np.float32)


def augment(volume, mask, background, rng, fields, distance=None, layered_scalp=False, spatial=False):
    """Training-time augmentation of one cached volume (0..1 scale) then z-scoring.

    - contrast: intensities raised to a power in 0.7..1.4,
    - tissue outside the brain, for the subject's background voxels inside the input mask
      (zero in skull-stripped scans), so "no skull" is never a cue for "good": with p=0.5
      smooth random tissue of random brightness, else none; with ``layered_scalp``
      (``--raw-scan-variation``) p=0.5 layered CSF, skull and scalp as in a raw head
      (``scalp_layers``), p=0.2 smooth random tissue, else none. Tissue is added, not
      substituted, so ghosts, wrap-around and noise in that background stay visible,
    - with ``spatial`` (``--spatial-augment``), p=SPATIAL_P: a random affine (``random_affine``,
      SPATIAL_RANGES) on the grid, cubic interpolation, so that registration's residual
      misalignment and head shape are no cue; the input mask is applied afterwards, as at
      inference,
    - left-right flip with p=0.5.
    """
    v = np.clip(volume.astype(np.float32), 0, None) ** rng.uniform(0.7, 1.4)
    if background is not None:
        branch = rng.random()
        if layered_scalp and branch < 0.5:
            if distance is None:
                distance = brain_distance(mask, background)
            v = v + scalp_layers(background, distance, rng, fields)
        elif branch < (0.7 if layered_scalp else 0.5):
            field = fields[rng.integers(len(fields))]
            level = rng.uniform(0.05, 0.7)
            v = np.where(background, v + level * (0.5 + field), v)
    if spatial and rng.random() < SPATIAL_P:
        v = np.clip(spatial_transform(v, *random_affine(rng)), 0, None)  # cubic overshoot
    if rng.random() < 0.5:
        v = v[::-1]
    return zscore(np.ascontiguousarray(v), mask)


def background_maps(rows, volumes, mask, distances=False):
    """Per subject: (voxels inside ``mask`` that are background in its clean original scan,
    their distance from its brain where ``distances`` (for ``scalp_layers``), else None)."""
    maps = {}
    for row, volume in zip(rows, volumes):
        if row["variant"] == "original":
            background = mask & (volume.astype(np.float32) < 0.03)
            maps[row["subject"]] = (background, brain_distance(mask, background) if distances else None)
    return maps


def moved_backgrounds(rows, backgrounds, mask, distances=False):
    """Background maps for rows moved at registration (``--registration-jitter``): the
    subject's background (found on its unmoved original, ``background_maps``) moved the same
    way (nearest neighbour), keyed (subject, move_seed), so that added tissue stays outside
    the moved brain. Returns the background key of every row (the subject where unmoved)."""
    keys = []
    for row in rows:
        seed = row.get("move_seed")
        if seed in (None, "") or row["subject"] not in backgrounds:
            keys.append(row["subject"])
            continue
        key = (row["subject"], int(seed))
        if key not in backgrounds:
            matrix, shift = jitter_move(seed)
            original = backgrounds[row["subject"]][0].astype(np.float32)
            moved = mask & (spatial_transform(original, matrix, shift, order=0) > 0.5)
            backgrounds[key] = (moved, brain_distance(mask, moved) if distances else None)
        keys.append(key)
    return keys


def batches(indices, volumes, y_bad, y_art, weights, mask, backgrounds, subjects, batch_size,
            mixup_alpha, rng, fields, layered_scalp=False, spatial=False):
    """Yield one epoch of augmented, mixed-up batches (x, {p_bad, artifacts}, weights)."""
    order = rng.permutation(indices)
    if 0 < len(order) < batch_size:  # fewer volumes than a batch (a few ratings): repeated to fill one
        order = np.resize(order, batch_size)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        x = []
        for i in idx:
            background, distance = backgrounds.get(subjects[i], (None, None))
            x.append(augment(volumes[i], mask, background, rng, fields, distance=distance,
                             layered_scalp=layered_scalp, spatial=spatial))
        x = np.stack(x)
        yb, ya, w = y_bad[idx], y_art[idx], weights[idx]
        if mixup_alpha > 0:
            lam = rng.beta(mixup_alpha, mixup_alpha, size=len(idx)).astype(np.float32)
            perm = rng.permutation(len(idx))
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[perm]
            yb = lam * yb + (1 - lam) * yb[perm]
            ya = lam[:, None] * ya + (1 - lam[:, None]) * ya[perm]
            w = lam * w + (1 - lam) * w[perm]
        yield x[..., None], {"p_bad": yb[:, None], "artifacts": ya}, w
