"""The report's pictures, as PNG bytes (matplotlib, Agg): the scan as acquired, the
registration check, the saliency map, each native score against its calibrated range, a
fired detector's own evidence, and the group page's thumbnail."""

import io

import numpy as np

#: display sizes (inches at 100 dpi) and slices per view
MOSAIC_SLICES = 7
VIEWS = (("axial", 2), ("coronal", 1), ("sagittal", 0))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi=100):
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    plt.close(fig)
    return buffer.getvalue()


def robust_window(data, low=0.5, high=99.5):
    """Display range of a volume: percentiles of its non-zero voxels (all voxels if none)."""
    values = data[data != 0] if np.any(data != 0) else data.ravel()
    lo, hi = (float(np.percentile(values, q)) for q in (low, high))
    return lo, hi if hi > lo else lo + 1.0


def _slice(data, axis, index):
    """A slice for display: RAS data, so the first image axis is left-right; transposed and
    flipped so that superior/anterior is up (a view of the volume, then a small copy)."""
    plane = data[index] if axis == 0 else data[:, index] if axis == 1 else data[:, :, index]
    return np.rot90(plane)


def _positions(data, axis, n):
    """``n`` slice indices through the extent of the signal along ``axis``."""
    other = tuple(a for a in range(3) if a != axis)
    profile = np.abs(data).sum(axis=other)
    inside = np.nonzero(profile > 0.05 * profile.max())[0] if profile.max() > 0 else np.arange(data.shape[axis])
    first, last = (inside[0], inside[-1]) if inside.size else (0, data.shape[axis] - 1)
    return np.linspace(first + 0.1 * (last - first), last - 0.1 * (last - first), n).round().astype(int)


def _panel(plane, zooms2d, height):
    """A slice resampled to square display pixels, ``height`` pixels high (linear)."""
    from scipy import ndimage

    rows_mm, cols_mm = plane.shape[0] * zooms2d[0], plane.shape[1] * zooms2d[1]
    scale = height / max(rows_mm, 1e-6)
    factors = (height / plane.shape[0], max(cols_mm * scale, 1) / plane.shape[1])
    return ndimage.zoom(plane, factors, order=1, grid_mode=True, mode="nearest")


def _display_zooms(zooms, axis):
    """(row, column) voxel sizes of ``_slice`` along ``axis`` (rot90 swaps the two in-plane axes)."""
    rest = [z for a, z in enumerate(zooms) if a != axis]
    return rest[1], rest[0]


def _montage(panels, gap=4):
    """Rows of panels (lists of 2D or RGB arrays) joined with black gaps, rows padded to one width."""
    rows = []
    for row in panels:
        height = max(p.shape[0] for p in row)
        padded = []
        for panel in row:
            pad = [(0, height - panel.shape[0]), (0, gap)] + [(0, 0)] * (panel.ndim - 2)
            padded.append(np.pad(panel, pad))
        rows.append(np.concatenate(padded, axis=1))
    width = max(r.shape[1] for r in rows)
    out = [np.pad(r, [(0, gap), (0, width - r.shape[1])] + [(0, 0)] * (r.ndim - 2)) for r in rows]
    return np.concatenate(out, axis=0)


def mosaic(data, zooms, window=None, n=MOSAIC_SLICES, overlay=None, contour=None, height=130):
    """Axial, coronal and sagittal rows (top to bottom) of ``n`` slices each of an RAS volume,
    in square display pixels; ``overlay`` (0-1, same shape) blended in matplotlib's "hot"
    colour map where it is above 0.2; ``contour`` (a mask) drawn as a green outline."""
    from matplotlib import colormaps
    from scipy import ndimage

    lo, hi = window or robust_window(data)
    hot = colormaps["hot"]
    panels = []
    for _, axis in VIEWS:
        row = []
        for index in _positions(data, axis, n):
            shape_zooms = _display_zooms(zooms, axis)
            gray = np.clip((_panel(_slice(data, axis, index), shape_zooms, height) - lo) / (hi - lo), 0, 1)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            if overlay is not None:
                heat = _panel(_slice(overlay, axis, index).astype(np.float32), shape_zooms, height)
                alpha = np.where(heat > 0.2, 0.55, 0.0)[..., None]
                rgb = (1 - alpha) * rgb + alpha * hot(np.clip(heat, 0, 1))[..., :3]
            if contour is not None:
                inside = _panel(_slice(contour.astype(np.float32), axis, index), shape_zooms, height) > 0.5
                edge = inside & ~ndimage.binary_erosion(inside, iterations=1)
                rgb[edge] = (0.2, 1.0, 0.4)
            row.append(rgb)
        panels.append(row)
    return _imsave(_montage(panels))


def _imsave(rgb):
    plt = _pyplot()
    buffer = io.BytesIO()
    plt.imsave(buffer, np.clip(rgb, 0, 1), format="png", pil_kwargs={"compress_level": 3})
    return buffer.getvalue()


def thumbnail(data, zooms, height=96):
    """The middle axial, coronal and sagittal slices side by side, small (the group page's)."""
    lo, hi = robust_window(data)
    row = [np.clip((_panel(_slice(data, axis, data.shape[axis] // 2), _display_zooms(zooms, axis), height) - lo)
                   / (hi - lo), 0, 1) for _, axis in VIEWS]
    return _imsave(np.repeat(_montage([row])[..., None], 3, axis=2))


def score_ranges(scores, calibrations, columns):
    """One row per calibrated native score (log scale): the clean training range (up to
    ``low``), the detector's uncertain zone, its threshold, where severe simulated artifacts
    start (``high``), and the scan's score as a marker."""
    plt = _pyplot()
    names = [n for n in calibrations if scores.get(n) is not None]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * max(len(names), 1) + 0.7))
    for row, name in enumerate(names):
        cal = calibrations[name]
        low, high, cut = (float(cal[k]) for k in ("low", "high", "threshold"))
        value = max(float(scores[name]), 1e-6)
        left = min(low, value, cut) / 3
        right = max(high, value, cut) * 3
        ax.barh(row, low - left, left=left, color="#9fd89f", height=0.5)
        ax.barh(row, high - low, left=low, color="#f3d27a", height=0.5)
        ax.barh(row, right - high, left=high, color="#f29b9b", height=0.5)
        ax.plot([cut, cut], [row - 0.3, row + 0.3], color="black", lw=1)
        fired = value >= low
        ax.plot(value, row, marker="D", color="#b00020" if fired else "#1f4e99", markersize=7)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), [columns.get(n, n) for n in names], fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("score (green: clean training scans; yellow: uncertain; red: simulated artifacts; "
                  "line: threshold; diamond: this scan)", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def spectrum_evidence(data, zooms):
    """A spike's evidence: maximum projections of the log magnitude spectrum along each axis
    (a spike is a bright point off the centre, seen as a stripe pattern in the image)."""
    from ..scores import magnitude_spectrum

    plt = _pyplot()
    magnitude = np.log1p(magnitude_spectrum(np.asarray(data, np.float32), zooms))
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
    for ax, (name, axis) in zip(axes, VIEWS):
        projection = np.rot90(magnitude.max(axis=axis))
        lo, hi = np.percentile(projection, (50, 99.9))
        ax.imshow(projection, cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(f"k-space, max over {name} axis", fontsize=7)
        ax.set_axis_off()
    fig.tight_layout()
    return _png(fig)


def background_evidence(data, zooms):
    """Ghosting's or noise's evidence: the scan windowed to its faintest 3 % of intensities,
    where ghosts of the head and noise in the background show."""
    lo, hi = robust_window(data)
    return mosaic(data, zooms, window=(0.0, lo + 0.03 * (hi - lo)), n=5)


def slice_evidence(data, zooms):
    """Thick or bad slices' evidence: each axis's slice-to-slice change (log of the pair's
    relative difference over its running median; a bad slab or thick slices stand out)."""
    from ..scores import foreground, slice_breaks

    plt = _pyplot()
    positive = np.maximum(np.asarray(data, np.float32), 0)
    breaks = slice_breaks(positive, zooms, foreground(positive))
    fig, ax = plt.subplots(figsize=(6.5, 2.4))
    for axis, values, used in breaks:
        position = np.arange(len(values)) * zooms[axis]
        ax.plot(position[used], np.asarray(values)[used], lw=0.9, label=f"axis {'xyz'[axis]} ({'RAS'[axis]})")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("mm along the axis", fontsize=7)
    ax.set_ylabel("slice-pair change\n(log, vs running median)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


EVIDENCE = {"spike": spectrum_evidence, "ghosting": background_evidence, "noise": background_evidence,
            "thick_slices": slice_evidence, "bad_slices": slice_evidence}
