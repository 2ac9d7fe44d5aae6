"""monai-sam: sharpness-aware training for MONAI."""

__version__ = "0.1.0"
