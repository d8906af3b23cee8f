"""PredictQC: run the ensemble with Monte Carlo dropout (bidsqc.model.ensemble)."""

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from .base import QCInputSpec, QCInterface, QCOutputSpec


class _PredictInputSpec(QCInputSpec):
    in_file = traits.Str(mandatory=True, desc="preprocessed image on the model grid ('' after an error)")
    model_dir = traits.Str(mandatory=True, desc="ensemble folder")
    mc_samples = traits.Int(0, usedefault=True, desc="MC dropout passes per fold (0: the model card's)")
    threshold = traits.Float(-1.0, usedefault=True, desc="p_bad threshold (<0: the model card's)")


class _PredictOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="unused; kept for a uniform interface")


class PredictQC(QCInterface):
    """p_bad (mean over folds x MC passes), p_bad_std, per-artifact probabilities, verdict."""

    input_spec = _PredictInputSpec
    output_spec = _PredictOutputSpec
    stage = "predict"

    def _stage(self, info, cwd):
        from ..detectors import apply
        from ..model.ensemble import MC_SEED, band_half_width_logit, load_cached, uncertain_band

        ensemble = load_cached(self.inputs.model_dir)
        volume = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float32)
        result = ensemble.predict(volume, mc_samples=self.inputs.mc_samples or None, seed=MC_SEED)
        threshold = self.inputs.threshold if self.inputs.threshold >= 0 else ensemble.threshold
        band = ensemble.uncertain_band
        if self.inputs.threshold >= 0:  # keep the band's width (in log-odds) around a user threshold
            band = uncertain_band(threshold, band_half_width_logit(band))
        p_artifacts = {a: round(float(v[0]), 4) for a, v in result.p_artifacts.items()}
        record = {"p_bad_network": round(float(result.p_bad[0]), 4)}
        scores = info.get("detector_scores") or {}
        flagged = None
        if ensemble.detectors and scores:
            record["p_detectors"], flagged = apply(result, 0, scores, ensemble.detectors, threshold, band)
        # the card's naming weighs the network's heads and the native scores; a detector that
        # raised p_bad, or the network's top head, names it where there is no naming
        record["likely_artifact"] = ensemble.likely_artifact(p_artifacts, scores, flagged)
        record["reason"] = result.reason(0, threshold, band, record["p_bad_network"], flagged, scores.get(flagged),
                                         ensemble.detectors.get(flagged), detectors=bool(ensemble.detectors and scores))
        record.update({"p_bad": round(float(result.p_bad[0]), 4), "p_bad_std": round(float(result.p_bad_std[0]), 4),
                       "p_artifacts": p_artifacts, "qc": result.verdicts(threshold, band)[0], "threshold": threshold,
                       "uncertain_band": list(band), "mc_samples": int(self.inputs.mc_samples or
                                                                ensemble.card.get("mc_samples", 4)),
                       "mc_seed": MC_SEED, "model_id": ensemble.model_id, "n_folds": len(ensemble.models)})
        return record
