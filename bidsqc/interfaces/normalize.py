"""ResampleNormalize: resample onto the model grid, mask and z-score (bidsqc.preprocessing)."""

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from ..model.card import read_card
from ..preprocessing.register import read_itk_affine
from ..preprocessing.pipeline import to_model_grid
from ..preprocessing.resample import zscore
from ..preprocessing.templates import cached_template
from .base import QCInputSpec, QCInterface, QCOutputSpec


class _NormalizeInputSpec(QCInputSpec):
    in_file = traits.Str(mandatory=True, desc="conformed T1w ('' after an error)")
    xfm_file = traits.Str(mandatory=True, desc="ITK affine template -> T1w ('' after an error)")
    model_dir = traits.Str(mandatory=True, desc="ensemble folder (its model card gives the grid)")
    template = traits.Str("MNI152NLin6Asym", usedefault=True,
                          desc="TemplateFlow template ID (the shipped ensemble's by default)")


class _NormalizeOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="the image the network sees: model grid, masked, z-scored")


class ResampleNormalize(QCInterface):
    """Resample to the grid the model card declares and normalise as it says."""

    input_spec = _NormalizeInputSpec
    output_spec = _NormalizeOutputSpec
    stage = "normalize"

    def _stage(self, info, cwd):
        card = read_card(self.inputs.model_dir)
        shape = tuple(card["input"]["shape"])
        affine = np.asarray(card["input"]["affine"], dtype=float)
        mask = np.asarray(nib.load(os.path.join(self.inputs.model_dir, card["input"]["mask_file"])).dataobj) > 0
        template = cached_template(self.inputs.template)
        matrix = read_itk_affine(self.inputs.xfm_file)
        volume, quality = to_model_grid(nib.load(self.inputs.in_file), matrix, template, shape, affine, mask)
        normalized = zscore(volume, mask)
        out_file = os.path.join(cwd, "t1w_preproc.nii.gz")
        nib.save(nib.Nifti1Image(normalized, affine), out_file)
        self._results["out_file"] = out_file
        return {"reg_quality": quality}
