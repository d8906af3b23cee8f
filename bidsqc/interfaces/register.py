"""RegisterToTemplate: affine registration to the template (bidsqc.preprocessing.register)."""

import os
from functools import lru_cache

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from ..preprocessing.register import register_affine, write_itk_affine
from ..preprocessing.templates import get_template
from .base import QCInputSpec, QCInterface, QCOutputSpec


@lru_cache(maxsize=4)
def cached_template(template_id):
    """One template load per process (Nipype workers are reused across scans)."""
    return get_template(template_id)


class _RegisterInputSpec(QCInputSpec):
    in_file = traits.Str(mandatory=True, desc="conformed T1w ('' after an error)")
    template = traits.Str("MNI152NLin6Asym", usedefault=True,
                          desc="TemplateFlow template ID (the shipped ensemble's by default)")


class _RegisterOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="ITK text affine, template -> T1w ('' after an error)")


class RegisterToTemplate(QCInterface):
    """Affine (similarity, then 12-dof) registration to the 2 mm template."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec
    stage = "register"

    def _stage(self, info, cwd):
        template = cached_template(self.inputs.template)
        matrix, reg_info = register_affine(nib.load(self.inputs.in_file), template)
        out_file = os.path.join(cwd, "from-T1w_to-template_xfm.txt")
        write_itk_affine(matrix, out_file)
        self._results["out_file"] = out_file
        reg_info.update(template=template.template_id, template_source=template.source,
                        template_fallback=template.fallback, template_to_t1w=np.round(matrix, 6).tolist())
        return reg_info
