"""Find the registration template (T1w + brain mask, 2 mm) through TemplateFlow, offline-safe.

MNI152NLin6Asym, the shipped ensemble's template, is read from the copy inside the package.
For any other template TemplateFlow is tried first. When it cannot deliver (offline, empty
cache, unknown template), bidsqc falls back, with a warning naming the fallback, to
1. the copy of TemplateFlow's MNI152NLin6Asym (res-02 T1w with skull and brain mask)
   that the bidsqc package ships in ``bidsqc/data/templates`` (the template the shipped
   ensemble was trained with), then
2. the MNI152 (ICBM 2009a, skull-stripped) template that nilearn ships.
"""

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib

LOGGER = logging.getLogger("bidsqc")

SHIPPED_ID = "MNI152NLin6Asym"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "templates"
NILEARN_ID = "MNI152NLin2009aSym"
NILEARN_SOURCE = "nilearn (mni_icbm152_t1_tal_nlin_sym_09a, 2 mm, skull-stripped)"


@dataclass
class Template:
    """A registration target: T1w and brain mask images (world coordinates in MNI mm)."""

    template_id: str
    t1w: nib.Nifti1Image
    mask: nib.Nifti1Image
    source: str
    fallback: bool = False


def _templateflow_files(template_id):
    """Return (t1w, mask) paths from TemplateFlow's cache, or raise with the reason."""
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
    from templateflow import api as tflow  # imported late: it reads TEMPLATEFLOW_HOME at import

    t1w = tflow.get(template_id, resolution=2, desc=None, suffix="T1w", extension=".nii.gz")
    mask = tflow.get(template_id, resolution=2, desc="brain", suffix="mask", extension=".nii.gz")
    paths = []
    for what, found in (("T1w", t1w), ("brain mask", mask)):
        if isinstance(found, list):
            found = found[0] if len(found) == 1 else None
        if not found or not Path(found).is_file() or Path(found).stat().st_size == 0:
            raise FileNotFoundError(f"TemplateFlow has no res-2 {what} for {template_id}")
        paths.append(Path(found))
    return paths


def shipped_template():
    """The MNI152NLin6Asym res-02 copy inside the bidsqc package."""
    t1w = SHIPPED_DIR / f"tpl-{SHIPPED_ID}_res-02_T1w.nii.gz"
    mask = SHIPPED_DIR / f"tpl-{SHIPPED_ID}_res-02_desc-brain_mask.nii.gz"
    if not (t1w.is_file() and mask.is_file()):
        raise FileNotFoundError(f"{SHIPPED_DIR} lacks the shipped {SHIPPED_ID} files")
    return Template(SHIPPED_ID, nib.load(t1w), nib.load(mask), source=f"bidsqc package ({SHIPPED_DIR})")


def nilearn_template():
    """nilearn's MNI152 2009a template and brain mask at 2 mm."""
    from nilearn import datasets

    return Template(NILEARN_ID, datasets.load_mni152_template(resolution=2),
                    datasets.load_mni152_brain_mask(resolution=2), source=NILEARN_SOURCE)


def get_template(template_id=SHIPPED_ID, allow_fallback=True, use_shipped=True):
    """Return the Template for ``template_id``; fall back (with a warning) when TemplateFlow fails.
    The shipped template (SHIPPED_ID, a byte-identical copy of TemplateFlow's files) is read
    from the package first: TemplateFlow would try a download wherever its cache lacks it,
    which costs every scan a network timeout on an offline node."""
    if template_id == SHIPPED_ID and use_shipped:
        try:
            return shipped_template()
        except OSError:
            pass
    try:
        t1w_path, mask_path = _templateflow_files(template_id)
        return Template(template_id, nib.load(t1w_path), nib.load(mask_path),
                        source=f"TemplateFlow ({t1w_path})")
    except Exception as exc:  # offline, empty cache, network errors, unknown id
        reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:120]
        if not allow_fallback:
            raise RuntimeError(f"template {template_id}: TemplateFlow could not deliver it ({reason})") from exc
        candidates = ([shipped_template] if use_shipped else []) + [nilearn_template]
        for loader in candidates:
            try:
                template = loader()
            except Exception as load_exc:  # a missing fallback: try the next one
                LOGGER.debug("fallback %s unavailable: %s", loader.__name__, load_exc)
                continue
            template.fallback = True
            LOGGER.warning("template %s: TemplateFlow could not deliver it (%s); falling back to %s from %s",
                           template_id, reason, template.template_id, template.source)
            return template
        raise RuntimeError(f"template {template_id}: TemplateFlow could not deliver it ({reason}) and no "
                           "fallback template is installed")


@lru_cache(maxsize=4)
def cached_template(template_id):
    """``get_template(template_id)``, loaded once per process (Nipype workers and dataset
    builders are reused across scans)."""
    return get_template(template_id)
