"""bidsqc: automated quality control of T1-weighted brain MRI with a 3D CNN ensemble."""

__version__ = "0.1.0"
