"""The objects training runs leave beside the weights, read as inert data.

A checkpoint saved by a training script often carries the run's own objects next to the
weights: torchvision's reference scripts save the run's ``argparse.Namespace`` under ``args``,
Microsoft's Swin training its yacs ``CfgNode`` under ``config``, mmengine's Runner the
``HistoryBuffer`` objects of its ``MessageHub`` under ``message_hub``. torch's safe loader
refuses them because the pickle names their classes. Here each such name is allow-listed with
a stand-in class of ours instead: nothing is imported from the named module, no method of the
real class runs, and the stand-in only keeps the state the pickle gives it (pickle protocol 2
builds these objects with ``NEWOBJ`` and ``BUILD``, which torch performs itself as
``cls.__new__(cls)`` and ``instance.__dict__.update(state)``, plus ``SETITEMS`` for a dict).
Any other class stays refused. The converter reads only tensors, so the stand-ins' contents
are never used.

One more global is needed: a ``HistoryBuffer`` keeps its statistics methods (``min``, ``max``,
``mean``, ``current``) in ``statistics_methods``, which pickle writes as
``getattr(HistoryBuffer, "min")``. ``getattr`` is allowed as `inert_getattr`, which answers only
for a stand-in and never looks anything up.
"""

from __future__ import annotations

import collections
import pickle


class InertObject:
    """Stand-in for an allow-listed training-run object: holds the attributes its pickle sets
    and does nothing else."""


class InertDict:
    """Stand-in for an allow-listed ``dict`` subclass (yacs ``CfgNode``): ``InertDict.__new__``
    gives a plain ``OrderedDict``, the one dict type torch's loader both fills with items and
    lets ``BUILD`` set attributes on: the result is the items, and the node's attributes
    (``__immutable__``...) in the dict's unused ``__dict__``."""

    def __new__(cls, *args: object) -> collections.OrderedDict:
        return collections.OrderedDict()


# name a pickle uses -> (stand-in, who writes it). Allow a new name only for a class whose
# pickle is plain data (protocol 2 NEWOBJ + BUILD, items for a dict).
TRAINING_OBJECTS: dict[str, tuple[type, str]] = {
    "argparse.Namespace": (
        InertObject,
        "torchvision's reference training scripts (args)",
    ),
    "yacs.config.CfgNode": (InertDict, "Microsoft's Swin training (config)"),
    "mmengine.logging.history_buffer.HistoryBuffer": (
        InertObject,
        "mmengine's Runner (message_hub.log_scalars)",
    ),
}


STAND_INS = (InertObject, InertDict)


def inert_getattr(owner: object, name: str) -> None:
    """``getattr`` as a pickle of a stand-in calls it (a method kept in an attribute): None,
    without looking anything up; for anything but a stand-in class or instance it refuses.

    Raises:
        pickle.UnpicklingError: ``owner`` is not a stand-in.
    """
    if owner in STAND_INS or isinstance(owner, STAND_INS):
        return None
    raise pickle.UnpicklingError(
        f"getattr({type(owner).__name__}, {name!r}) refused: only attributes of allow-listed "
        f"training-run objects are read, as None"
    )


def training_object_globals() -> list[tuple[object, str]]:
    """``(stand-in, "module.name")`` for each name in `TRAINING_OBJECTS` and for ``getattr``,
    in the form `torch.serialization.safe_globals` takes."""
    stand_ins = [(stand_in, name) for name, (stand_in, _) in TRAINING_OBJECTS.items()]
    return [*stand_ins, (inert_getattr, "builtins.getattr")]
