"""Measurement tools for sharpness-aware training: the memory an optimizer step costs over its base optimizer.

See :mod:`monai_sam.profiling.memory`; everything it exports is re-exported here.
"""

from monai_sam.profiling.memory import CalibrationSGD as CalibrationSGD
from monai_sam.profiling.memory import MemoryOverhead as MemoryOverhead
from monai_sam.profiling.memory import StepMemory as StepMemory
from monai_sam.profiling.memory import StepSetup as StepSetup
from monai_sam.profiling.memory import measure_memory_overhead as measure_memory_overhead
from monai_sam.profiling.memory import profile_step_memory as profile_step_memory
