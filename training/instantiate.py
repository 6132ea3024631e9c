"""Building objects from config nodes, with errors a user can act on."""
from __future__ import annotations

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig


def instantiate_checked(node, where: str, **kwargs):
    """``hydra.utils.instantiate`` whose argument errors come out as they are, not wrapped in Hydra's
    multi-line InstantiationException: ``ValueError("data: val_size=192 should be smaller than ...")``
    (a TypeError, e.g. an unknown keyword, becomes a ValueError; OSErrors pass unchanged)."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, OSError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ValueError(f"{where}: {cause}") from None
        raise


def instantiate_list(group: DictConfig | None, where: str = "", **extra) -> list:
    """Instantiate every entry of a config group holding named objects (callbacks, loggers);
    an ``extra`` keyword argument goes to the entries whose config has that key. An entry's
    argument error names it: ``ValueError("callbacks.progressive: size should be ...")``."""
    if not group:
        return []
    objects = []
    for name, node in group.items():
        if node is None or "_target_" not in node:
            continue
        wanted = {k: v for k, v in extra.items() if k in node}
        objects.append(instantiate_checked(node, f"{where}.{name}" if where else str(name), **wanted))
    return objects
