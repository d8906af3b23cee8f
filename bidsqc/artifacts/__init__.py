"""Artifact simulators: deterministic functions of (image, parameters) plus samplers.

``simulate(img, artifact, severity, rng)`` draws parameters with the artifact's
sampler and applies the deterministic function, in native space, as in acquisition.
"""

from .simulators import ARTIFACTS, SEVERITIES, apply_artifact, sample_params, simulate

__all__ = ["ARTIFACTS", "SEVERITIES", "apply_artifact", "sample_params", "simulate"]
