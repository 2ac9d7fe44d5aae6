"""Ignite events and output keys of the sharpness-aware iteration."""

from __future__ import annotations

from ignite.engine import EventEnum

__all__ = ["SharpnessEvents", "SharpnessKeys"]


class SharpnessEvents(EventEnum):
    """Events fired by :class:`~monai_sam.engines.SharpnessAwareIteration` inside one iteration.

    They sit between MONAI's ``IterationEvents.LOSS_COMPLETED`` (clean pass) and
    ``IterationEvents.BACKWARD_COMPLETED`` (final gradient ready). During a ``PASS_COMPLETED``
    handler, ``engine.state.sharpness_pass`` holds the index of the pass that just finished
    (0 = clean pass at the current weights).

    Register them before handlers attach: ``SupervisedTrainer(..., event_names=[SharpnessEvents])``
    (bundle config: ``"event_names": "$[monai_sam.engines.SharpnessEvents]"``).
    :class:`~monai_sam.engines.SharpnessAwareTrainer` registers them itself.

    Attributes:
        PASS_COMPLETED: a forward/backward pass finished; ``.grad`` holds that pass's gradient.
        PERTURBED: the weights were moved to the point of the next pass.
        RESTORED: the weights are back at ``w`` and ``.grad`` holds the method's final gradient.
    """

    PASS_COMPLETED = "sharpness_pass_completed"
    PERTURBED = "sharpness_perturbed"
    RESTORED = "sharpness_restored"


class SharpnessKeys:
    """Extra keys the sharpness-aware iteration writes into ``engine.state.output``.

    ``loss`` and ``pred`` keep MONAI's meaning and come from the clean pass.

    Attributes:
        LOSS_PERTURBED: loss of the first perturbed pass (the ascent point ``w + e`` for SAM-type
            methods); NaN on a step that ran a single pass.
        SHARPNESS: ``loss_perturbed - loss``.
        NUM_PASSES: number of forward/backward passes this iteration ran.
    """

    LOSS_PERTURBED = "loss_perturbed"
    SHARPNESS = "sharpness"
    NUM_PASSES = "num_passes"
