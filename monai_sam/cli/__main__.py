"""Allow ``python -m monai_sam.cli``."""

from monai_sam.cli import main

raise SystemExit(main())
