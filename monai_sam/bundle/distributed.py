"""The torchrun set-up, renamed.

Kept so that configs users copied, which name ``monai_sam.bundle.distributed.<name>``, still resolve; new
configs and code import from :mod:`monai_sam.bundle.torchrun`.
"""

from monai_sam.bundle.torchrun import (
    OUTPUT_HANDLERS,
    close_distributed,
    init_distributed,
    is_main_process,
    main_process_first,
    rank_handlers,
)

__all__ = [
    "OUTPUT_HANDLERS",
    "close_distributed",
    "init_distributed",
    "is_main_process",
    "main_process_first",
    "rank_handlers",
]
