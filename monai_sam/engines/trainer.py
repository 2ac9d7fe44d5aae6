"""``SharpnessAwareTrainer``: MONAI's ``SupervisedTrainer`` with the sharpness-aware iteration built in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import default_metric_cmp_fn, default_prepare_batch
from monai.engines.workflow import Workflow
from monai.inferers import Inferer
from monai.transforms import Transform
from torch.utils.data import DataLoader

from monai_sam.engines.events import SharpnessEvents
from monai_sam.engines.iteration import SharpnessAwareIteration

__all__ = ["SharpnessAwareTrainer"]


class SharpnessAwareTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose own ``_iteration`` is a :class:`SharpnessAwareIteration`.

    It takes ``SupervisedTrainer``'s arguments, in the same order, plus the iteration's options, all
    nameable from a bundle config. Because the sharpness-aware passes are the trainer's ``_iteration``,
    MONAI's wrappers that are themselves an ``iteration_update`` and end with
    ``engine._iteration(engine, batchdata)`` (the DeepGrow and DeepEdit ``Interaction`` classes, the
    MONAI Label trainers built on them) run every pass of the method inside them::

        trainer = SharpnessAwareTrainer(..., optimizer=create_optimizer("sam", ...),
                                        iteration_update=Interaction(transforms=clicks, ...))

    :class:`SharpnessEvents` are registered before the ``train_handlers`` attach, and ``trainer.scaler``
    is the iteration's own GradScaler from construction on (MONAI's trainer creates a fresh,
    uncheckpointable one in every ``run()``), so it can go into a ``CheckpointSaver``/``CheckpointLoader``
    ``save_dict`` as ``"$@trainer.scaler"``.

    Args:
        device, max_epochs, train_data_loader, network, optimizer, loss_function, epoch_length,
        non_blocking, prepare_batch, inferer, postprocessing, key_train_metric, additional_metrics,
        metric_cmp_fn, train_handlers, amp, event_names, event_to_attr, decollate, optim_set_to_none,
        to_kwargs, amp_kwargs, compile, compile_kwargs, accumulation_steps: as in ``SupervisedTrainer``.
        iteration_update: as in ``SupervisedTrainer``: None (default) runs the sharpness-aware
            ``_iteration``; a wrapper calling ``engine._iteration(engine, batchdata)`` runs it inside the
            wrapper; a callable that never calls it replaces it (as it replaces MONAI's). Not a
            :class:`SharpnessAwareIteration`: give its options to this trainer instead.
        bn_policy, replay_rng, max_norm, norm_type, amp_dtype, cpu_autocast_dtype, grad_scaler,
        scaler_kwargs, sync_perturbation, check_finite, output_index, interval, start_fraction: as in
        :class:`SharpnessAwareIteration` (its ``amp`` follows this trainer's ``amp``, which, as in MONAI,
        autocasts on CUDA only: a CPU model trains in fp32 unless ``cpu_autocast_dtype`` is given).

    Attributes:
        iteration: the :class:`SharpnessAwareIteration` that ``_iteration`` runs.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable[Any] | DataLoader[Any],
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable[..., Any],
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable[..., Any] = default_prepare_batch,
        iteration_update: Callable[[Any, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Any] | None = None,
        additional_metrics: dict[str, Any] | None = None,
        metric_cmp_fn: Callable[..., Any] = default_metric_cmp_fn,
        train_handlers: Sequence[Any] | None = None,
        amp: bool = False,
        event_names: list[Any] | None = None,
        event_to_attr: dict[str, Any] | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict[str, Any] | None = None,
        amp_kwargs: dict[str, Any] | None = None,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        accumulation_steps: int = 1,
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
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=amp,
            event_names=events,
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
            compile=compile,
            compile_kwargs=compile_kwargs,
            accumulation_steps=accumulation_steps,
        )
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
