"""Loading a trained checkpoint into its network, moved.

Kept so that configs users copied, which name ``monai_sam.bundle.checkpoint.<name>``, still resolve; new
configs and code import from :mod:`monai_sam.networks.checkpoint`.
"""

from monai_sam.networks.checkpoint import load_network_checkpoint

__all__ = [
    "load_network_checkpoint",
]
