"""Breast-ultrasound data: datalists, audit, leakage-free splits, transforms and a synthetic phantom.

External test sets (another hospital's images): :func:`load_external_sets` (:mod:`monai_sam.data.external`).

Images are PNG, JPEG, BMP, TIFF, DICOM or NIfTI files (:func:`open_image`, :class:`ReadOptions`).

The bundles call :func:`resolve_datalist`; the ``monai-sam audit|split|phantom`` commands wrap the rest.
"""

from monai_sam.data.audit import AuditReport, audit_dataset
from monai_sam.data.class_weights import CLASS_WEIGHT_MODES, balanced_class_weights, loss_class_weights
from monai_sam.data.datalist import BUSI_CLASSES, Datalist, DataWarning, build_datalist, find_masks
from monai_sam.data.external import (
    ExternalSet,
    ExternalSetSpec,
    load_external_set,
    load_external_sets,
    parse_external_specs,
)
from monai_sam.data.image_files import IMAGE_EXTENSIONS, check_image_file, is_mask_file
from monai_sam.data.image_hashing import DEFAULT_HASH_THRESHOLD, content_hash, hash_groups, perceptual_hash
from monai_sam.data.image_reading import DecodedImage, ReadOptions, SliceRequiredError, open_image
from monai_sam.data.phantom import make_phantom_dataset, make_site_phantom, simulate_bmode
from monai_sam.data.resolve import ensure_phantom, find_busi_dir, resolve_datalist
from monai_sam.data.splits import allocate_groups, load_split, make_splits, write_splits

# The transforms import MONAI (seconds); load them on first use so `monai-sam audit` starts fast.
_LAZY_TRANSFORMS = (
    "LoadUltrasoundImaged",
    "RandDepthAttenuationd",
    "RandGaind",
    "RandSpeckleNoised",
    "load_ultrasound_image",
    "ultrasound_transforms",
)


def __getattr__(name: str):
    """Import the MONAI transforms lazily (PEP 562)."""
    if name in _LAZY_TRANSFORMS:
        from monai_sam.data import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUSI_CLASSES",
    "CLASS_WEIGHT_MODES",
    "DEFAULT_HASH_THRESHOLD",
    "IMAGE_EXTENSIONS",
    "AuditReport",
    "DataWarning",
    "Datalist",
    "DecodedImage",
    "ExternalSet",
    "ExternalSetSpec",
    "LoadUltrasoundImaged",
    "RandDepthAttenuationd",
    "RandGaind",
    "RandSpeckleNoised",
    "ReadOptions",
    "SliceRequiredError",
    "allocate_groups",
    "audit_dataset",
    "balanced_class_weights",
    "build_datalist",
    "check_image_file",
    "content_hash",
    "ensure_phantom",
    "find_busi_dir",
    "find_masks",
    "hash_groups",
    "is_mask_file",
    "load_external_set",
    "load_external_sets",
    "load_split",
    "load_ultrasound_image",
    "loss_class_weights",
    "make_phantom_dataset",
    "make_site_phantom",
    "make_splits",
    "open_image",
    "parse_external_specs",
    "perceptual_hash",
    "resolve_datalist",
    "simulate_bmode",
    "ultrasound_transforms",
    "write_splits",
]
