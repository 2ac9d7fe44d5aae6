"""``SharpnessAwareTrainer``: MONAI's ``SupervisedTrainer`` with the sharpness-aware iteration built in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.workflow import Workflow

from monai_sam.engines.events import SharpnessEvents
from monai_sam.engines.iteration import SharpnessAwareIteration

__all__ = ["SharpnessAwareTrainer"]


class SharpnessAwareTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose own ``_iteration`` is a :class:`SharpnessAwareIteration`.

    It passes ``SupervisedTrainer``'s arguments through unchanged (so a MONAI upgrade needs no edit here)
    and takes the iteration's options, all nameable from a bundle config. Because the sharpness-aware
    passes are the trainer's ``_iteration``, MONAI's wrappers that are themselves an ``iteration_update``
    and end with ``engine._iteration(engine, batchdata)`` (the DeepGrow and DeepEdit ``Interaction``
    classes, the MONAI Label trainers built on them) run every pass of the method inside them::

        trainer = SharpnessAwareTrainer(..., optimizer=create_optimizer("sam", ...),
                                        iteration_update=Interaction(transforms=clicks, ...))

    :class:`SharpnessEvents` are registered before the ``train_handlers`` attach, and ``trainer.scaler``
    is the iteration's own GradScaler from construction on (MONAI's trainer creates a fresh,
    uncheckpointable one in every ``run()``), so it can go into a ``CheckpointSaver``/``CheckpointLoader``
    ``save_dict`` as ``"$@trainer.scaler"``.

    Args:
        args: ``SupervisedTrainer``'s positional arguments (``device``, ``max_epochs``, ...).
        event_names: as in ``SupervisedTrainer``; :class:`SharpnessEvents` is added when missing.
        iteration_update: as in ``SupervisedTrainer``: None (default) runs the sharpness-aware
            ``_iteration``; a wrapper calling ``engine._iteration(engine, batchdata)`` runs it inside the
            wrapper; a callable that never calls it replaces it (as it replaces MONAI's). Not a
            :class:`SharpnessAwareIteration`: give its options to this trainer instead.
        trainer_kwargs: every other ``SupervisedTrainer`` argument (``network``, ``optimizer``, ``amp``,
            ``accumulation_steps``, ...), passed through unchanged.
        bn_policy, replay_rng, max_norm, norm_type, amp_dtype, cpu_autocast_dtype, grad_scaler,
        scaler_kwargs, sync_perturbation, check_finite, output_index, interval, start_fraction: as in
        :class:`SharpnessAwareIteration` (its ``amp`` follows this trainer's ``amp``, which, as in MONAI,
        autocasts on CUDA only: a CPU model trains in fp32 unless ``cpu_autocast_dtype`` is given).

    Attributes:
        iteration: the :class:`SharpnessAwareIteration` that ``_iteration`` runs.
    """

    def __init__(
        self,
        *args: Any,
        iteration_update: Callable[[Any, Any], Any] | None = None,
        event_names: list[Any] | None = None,
        bn_policy: str = "clean",
        replay_rng: bool = False,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        amp_dtype: torch.dtype | str | None = None,
        cpu_autocast_dtype: torch.dtype | str | None = None,
        grad_scaler: bool | torch.amp.GradScaler | None = None,
        scaler_kwargs: dict[str, Any] | None = None,
        sync_perturbation: bool = False,
        check_finite: bool = True,
        output_index: int | None = None,
        interval: int | None = None,
        start_fraction: float | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if isinstance(iteration_update, SharpnessAwareIteration):
            raise TypeError(
                "SharpnessAwareTrainer: `iteration_update` is a SharpnessAwareIteration, but this trainer "
                "runs its own; pass that iteration's options (max_norm, bn_policy...) to "
                "SharpnessAwareTrainer, or use a plain SupervisedTrainer with "
                "iteration_update=SharpnessAwareIteration(...)."
            )
        self.iteration = SharpnessAwareIteration(
            bn_policy=bn_policy,
            replay_rng=replay_rng,
            max_norm=max_norm,
            norm_type=norm_type,
            amp=None,
            amp_dtype=amp_dtype,
            cpu_autocast_dtype=cpu_autocast_dtype,
            grad_scaler=grad_scaler,
            scaler_kwargs=scaler_kwargs,
            sync_perturbation=sync_perturbation,
            check_finite=check_finite,
            output_index=output_index,
            interval=interval,
            start_fraction=start_fraction,
        )
        events: list[Any] = list(event_names or [])
        if SharpnessEvents not in events:
            events.append(SharpnessEvents)
        trainer_kwargs.update(iteration_update=iteration_update, event_names=events)
        super().__init__(*args, **trainer_kwargs)
        self.scaler = self.iteration.scaler  # type: ignore[assignment]  # MONAI types it torch.cuda.amp's

    def _iteration(self, engine: Any, batchdata: Any) -> Any:
        """One sharpness-aware training iteration: :attr:`iteration` on ``engine`` and ``batchdata``.

        Args:
            engine: the trainer (MONAI passes it explicitly, as wrappers such as ``Interaction`` do).
            batchdata: the batch of this iteration.
        """
        return self.iteration(engine, batchdata)

    def run(self) -> None:  # type: ignore[override]
        """Run training; unlike ``Trainer.run`` it keeps ``self.scaler`` (the iteration's) across calls."""
        self.scaler = self.iteration.scaler  # type: ignore[assignment]  # MONAI types it torch.cuda.amp's
        Workflow.run(self)
