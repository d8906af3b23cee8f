"""Pure numpy/nibabel/SimpleITK functions: conform, register, resample, normalise.

Nothing here imports Nipype or TensorFlow, so the numerics are testable on their own.
"""
