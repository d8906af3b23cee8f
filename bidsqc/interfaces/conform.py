"""Conform: load, check and reorient a T1w image (bidsqc.preprocessing.conform)."""

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from ..preprocessing.conform import conform, load_image
from ..scores import FEATURES, REGISTERED, scores
from .base import QCInputSpec, QCInterface, QCOutputSpec


class _ConformInputSpec(QCInputSpec):
    # a plain string, not File(exists=True): a missing or unreadable file is the scan's error row
    # (load_image says why), never a workflow that cannot be built for every other scan
    in_file = traits.Str(mandatory=True, desc="T1w NIfTI")
    volume = traits.Int(0, usedefault=True, desc="volume of a 4D image to use")


class _ConformOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="RAS-oriented float32 image ('' after an error)")


class Conform(QCInterface):
    """Check the image (2D, empty, all-zero, non-finite -> error), reorient it to RAS and
    score it with the native-space detectors (bidsqc.scores; all but those that need the
    registration, which RegisterToTemplate adds)."""

    input_spec = _ConformInputSpec
    output_spec = _ConformOutputSpec
    stage = "conform"

    def _stage(self, info, cwd):
        name = os.path.basename(self.inputs.in_file)
        ras, conform_info = conform(load_image(self.inputs.in_file), name=name, volume=self.inputs.volume)
        out_file = os.path.join(cwd, "t1w_ras.nii")  # uncompressed: a work file, read by three stages and the report
        nib.save(ras, out_file)
        self._results["out_file"] = out_file
        record = conform_info.as_dict()
        # the native-space detectors see the scan on its own voxel grid, before any resampling;
        # those that need to know where the brain is wait for the registration (RegisterToTemplate)
        try:
            record["detector_scores"] = scores(np.asarray(ras.dataobj, np.float32), ras.header.get_zooms()[:3],
                                               only=[f for f in FEATURES if f not in REGISTERED])
        except ValueError as exc:  # too small for them: rated by the network alone
            record["detector_scores"] = None
            record["warnings"] = list(record.get("warnings") or []) + [f"{name}: detectors skipped: {exc}"]
        return record
