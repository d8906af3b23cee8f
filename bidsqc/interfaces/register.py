"""RegisterToTemplate: affine registration to the template (bidsqc.preprocessing.register)."""

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from ..preprocessing.register import register_affine, write_itk_affine
from ..preprocessing.templates import cached_template
from ..scores import REGISTERED, brain_voxels, scores
from .base import QCInputSpec, QCInterface, QCOutputSpec


class _RegisterInputSpec(QCInputSpec):
    in_file = traits.Str(mandatory=True, desc="conformed T1w ('' after an error)")
    template = traits.Str("MNI152NLin6Asym", usedefault=True,
                          desc="TemplateFlow template ID (the shipped ensemble's by default)")


class _RegisterOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="ITK text affine, template -> T1w ('' after an error)")


class RegisterToTemplate(QCInterface):
    """Affine (similarity, then 12-dof) registration to the 2 mm template; adds the native
    scores that need the registered brain (bidsqc.scores.REGISTERED) to the conformed
    scan's detector scores."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec
    stage = "register"

    def _stage(self, info, cwd):
        template = cached_template(self.inputs.template)
        loaded = nib.load(self.inputs.in_file)
        data = np.asarray(loaded.dataobj, np.float32)  # read once: the registration and the scores use it
        img = nib.Nifti1Image(data, loaded.affine, loaded.header)
        matrix, reg_info = register_affine(img, template)
        out_file = os.path.join(cwd, "from-T1w_to-template_xfm.txt")
        write_itk_affine(matrix, out_file)
        self._results["out_file"] = out_file
        reg_info.update(template=template.template_id, template_source=template.source,
                        template_fallback=template.fallback, template_to_t1w=np.round(matrix, 6).tolist())
        if info.get("detector_scores") is not None:
            # the scores that need to know where the brain is: the slice score (a cut into zero-filled
            # planes counts only where it passes through the brain) and the uncovered share of the brain
            brain = brain_voxels(img.affine, matrix, template.mask)
            reg_info["detector_scores"] = dict(info["detector_scores"], **scores(
                data, img.header.get_zooms()[:3], only=REGISTERED, brain=brain))
        return reg_info
