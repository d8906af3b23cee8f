"""Scores read off the run of slices and the field of view: thick slices, a break between
neighbouring slices (slice, inner slice), a fold at the edge (wrap-around), and the share of the
registered brain outside the field of view (uncovered).

How they are defined and why: docs/scores.md.
"""

import numpy as np
from scipy import ndimage

from .volume import as_volume, foreground, pair_slices

#: thick_score's quantile of the slice-pair roughness: below 0.5, so that slices copied in
#: pairs (a 4-5 mm slice on a 2 mm grid: every other pair identical) already count
THICK_QUANTILE = 0.4
#: thick_score's roughness floor, a fraction of the head's mean intensity (copied slices differ by 0)
THICK_FLOOR = 1e-3
#: slice_score: half-width (mm) of the running median a slice pair is compared with, and the
#: least head area (fraction of the largest) of a slice pair that counts
SLICE_WINDOW_MM = 10.0
SLICE_MIN_AREA = 0.25
#: fold_score: the power of the continuity factor (a cut end's 0.1-0.7 falls to 0.001-0.3, a
#: fold's 0.8-1 stays high), and the fewest head voxels the two end slices must hold
FOLD_CONTINUITY_POWER = 3
FOLD_MIN_VOXELS = 10


def thick_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """How much smoother the image is from slice to slice along its smoothest axis than
    along the other two: natural log of the other axes' roughness (geometric mean) over
    that axis', where roughness is the THICK_QUANTILE over neighbouring-slice pairs of the
    mean absolute difference inside the head. About 0-0.15 for a scan acquired on its grid
    (a little more with one coarser axis: 0.13-0.14 for ds002748 sub-01 resampled to 1.2 mm
    along one axis), several units for thick slices interpolated or copied onto a finer
    grid. ``head``: the scan's ``foreground``, where the caller has it already."""
    data = np.maximum(as_volume(data), 0)
    head = foreground(data) if head is None else head
    if head is None:
        return 0.0
    floor = THICK_FLOOR * float(data[head].mean()) if head.any() else 1e-6
    roughness = []
    for axis in range(3):
        lead, lag = pair_slices(axis)
        pair = head[lead] & head[lag]
        step = np.abs(data[lead] - data[lag]) * pair
        other = tuple(a for a in range(3) if a != axis)
        count = pair.sum(axis=other)
        used = count >= max(1, 0.05 * count.max())
        per_pair = step.sum(axis=other)[used] / count[used]
        roughness.append(max(float(np.quantile(per_pair, THICK_QUANTILE)) if per_pair.size else floor, floor))
    roughness = np.array(roughness)
    best = max(np.log(np.sqrt(np.prod(np.delete(roughness, a))) / roughness[a]) for a in range(3))
    return round(float(best), 4)


def data_ends(data):
    """Per axis, the (first, last) plane holding any non-zero voxel: the planes beyond them
    are zero-filled (padding, or a slab cut away to the array edge); None for an empty image."""
    nonzero = data != 0
    if not nonzero.any():
        return None
    ends = []
    for axis in range(3):
        filled = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        ends.append((int(filled[0]), int(filled[-1])))
    return ends


def brain_voxels(img_affine, template_to_t1w, template_mask):
    """The template brain's voxels mapped into an image by its registration: (3, n) voxel
    coordinates in the image (``img_affine``) of each brain voxel of ``template_mask`` (a
    nibabel brain mask), through ``template_to_t1w`` (template world to image world)."""
    mask = np.asarray(template_mask.dataobj) > 0.5
    ijk = np.stack(np.nonzero(mask)).astype(np.float64)
    to_voxels = np.linalg.inv(np.asarray(img_affine, np.float64)) @ np.asarray(template_to_t1w, np.float64) \
        @ np.asarray(template_mask.affine, np.float64)
    return to_voxels[:3, :3] @ ijk + to_voxels[:3, 3:4]


def brain_extent(brain):
    """Per axis, the (low, high) voxel coordinates ``brain`` (``brain_voxels``) spans."""
    return [(round(float(axis.min()), 2), round(float(axis.max()), 2)) for axis in np.asarray(brain)]


def uncovered_score(data, brain):
    """The share of the template brain (``brain_voxels``) outside the measured field of view:
    beyond the array, or in the zero-filled planes at an end of an axis (a slab cut away,
    zero padding); 0 to 1."""
    data = as_volume(data)
    brain = np.asarray(brain)
    ends = data_ends(data)
    if ends is None:
        return 1.0
    outside = np.zeros(brain.shape[1], bool)
    for axis, (first, last) in enumerate(ends):
        outside |= (brain[axis] < first - 0.5) | (brain[axis] > last + 0.5)
    return round(float(outside.mean()), 4) if outside.size else 0.0


def slice_breaks(data, zooms, head):
    """Per axis with at least 3 slice pairs that count: (axis, breaks, used). ``breaks``
    (one per pair of neighbouring slices): natural log of the pair's relative difference
    (mean absolute difference over mean intensity, inside the head of either slice) over its
    running median (+-SLICE_WINDOW_MM); ``used``: the pairs whose head covers at least
    SLICE_MIN_AREA of the largest. ``data`` non-negative."""
    out = []
    for axis in range(3):
        lead, lag = pair_slices(axis)
        pair = head[lead] | head[lag]  # either slice: a dropped slab leaves the head mask
        other = tuple(a for a in range(3) if a != axis)
        count = pair.sum(axis=other)
        step = (np.abs(data[lead] - data[lag]) * pair).sum(axis=other)
        level = (np.maximum(data[lead], data[lag]) * pair).sum(axis=other)
        used = count >= SLICE_MIN_AREA * max(int(count.max()), 1)
        if used.sum() < 3:
            continue
        relative = step[used] / np.maximum(level[used], 1e-9)
        filled = np.full(count.shape, float(np.median(relative)))
        filled[used] = relative
        k = max(3, int(round(SLICE_WINDOW_MM / float(zooms[axis]))))
        median = ndimage.median_filter(filled, size=2 * k + 1, mode="nearest")
        out.append((axis, np.log(np.maximum(filled, 1e-9) / np.maximum(median, 1e-9)), used))
    return out


def _largest_break(data, zooms, head, breaks, left_out):
    """The largest of the counted ``slice_breaks`` (``breaks``, or computed here); ``head``:
    as thick_score. ``left_out(axis, i)``: whether the break of pair i into the zero-filled
    end planes of ``axis`` is left out (None: every break counts)."""
    data = np.maximum(as_volume(data), 0)
    head = foreground(data) if head is None else head
    if head is None:
        return 0.0
    best = 0.0
    ends = data_ends(data) if left_out is not None else None
    for axis, ratio, used in slice_breaks(data, zooms, head) if breaks is None else breaks:
        counted = used.copy()
        if ends is not None:
            # pair i joins planes i and i + 1: the end pairs join the data to its zero-filled planes
            for i in (ends[axis][0] - 1, ends[axis][1]):
                if 0 <= i < counted.size and left_out(axis, i):
                    counted[i] = False
        if counted.any():
            best = max(best, float(ratio[counted].max()))
    return round(best, 4)


def slice_score(data, zooms=(1.0, 1.0, 1.0), head=None, extent=None, breaks=None):
    """The largest break between neighbouring slices along any axis (``slice_breaks``). A
    slab dropped in intensity, slices out of order or a slab cut away break the run of
    similar neighbours (about 1-2.5); a clean scan changes smoothly (about 0.3-0.6).
    ``head``: as thick_score. ``extent`` (``brain_extent``): a break into the zero-filled
    end planes of an axis is left out where the plane between them lies outside the brain's
    extent (the cut misses the brain); None counts every break. ``breaks``: this volume's
    ``slice_breaks``, where already computed."""
    # the cut of end pair i lies between its planes, at i + 0.5
    left_out = None if extent is None else (lambda axis, i: not extent[axis][0] < i + 0.5 < extent[axis][1])
    return _largest_break(data, zooms, head, breaks, left_out)


def inner_slice_score(data, zooms=(1.0, 1.0, 1.0), head=None, breaks=None):
    """slice_score inside the measured data: the largest break between neighbouring slices,
    leaving out every break into the zero-filled planes at an end of an axis, wherever the
    brain lies. A slab zero-filled at an end (missing coverage) breaks there only; slices
    dropped or out of order break inside. Naming only. ``head``, ``breaks``: as slice_score."""
    return _largest_break(data, zooms, head, breaks, lambda axis, i: True)


def fold_score(data, zooms=(1.0, 1.0, 1.0), head=None):
    """Wrap-around against a field of view that ends inside the head. A field of view
    shorter than the head folds what lies beyond one end onto the other, so the head reaches
    both ends and the image runs on across the edge as if periodic (the last slice's
    neighbour is the first). Per axis: the smaller of the head's cross-sections in the two
    end slices over its largest cross-section (presence), times (step / jump) **
    FOLD_CONTINUITY_POWER capped at 1 (continuity); jump is the mean absolute difference
    between the two end slices, step that of each end slice with its inner neighbour, both
    over the head in either end slice. A field of view that ends inside the head without
    folding (the outside discarded) also reaches both ends, but holds different anatomy at
    them, so the jump exceeds the step. The largest over the axes, 0 to 1. ``head``: as
    thick_score; ``zooms`` unused (the ends are single slices)."""
    data = np.maximum(as_volume(data), 0)
    head = foreground(data) if head is None else head
    if head is None:
        return 0.0
    best = 0.0
    for axis in range(3):
        if data.shape[axis] < 4:
            continue
        area = head.sum(axis=tuple(a for a in range(3) if a != axis))
        support = np.take(head, 0, axis=axis) | np.take(head, -1, axis=axis)
        if support.sum() < FOLD_MIN_VOXELS:
            continue
        presence = min(area[0], area[-1]) / area.max()
        first, second, before, last = (np.take(data, i, axis=axis)[support] for i in (0, 1, -2, -1))
        jump = float(np.abs(first - last).mean())
        step = 0.5 * float(np.abs(first - second).mean() + np.abs(last - before).mean())
        continuity = min(1.0, step / jump) if jump > 0 else 1.0
        best = max(best, float(presence) * continuity ** FOLD_CONTINUITY_POWER)
    return round(best, 5)
