"""Starting or joining the Ray cluster every stage runs on."""

from __future__ import annotations

import logging
import os

from raydsbs.config import RayConfig

logger = logging.getLogger(__name__)

# On a 2-core machine an actor pool or Ray Train asking for whole CPUs can wait
# forever; declaring more logical CPUs (the work is light) keeps stages moving.
MIN_LOCAL_CPUS = 4


def start_ray(config: RayConfig) -> None:
    """Join ``config.address`` (or $RAY_ADDRESS), or start a private local cluster; a no-op when Ray is up.

    With no address Ray itself would join the last cluster registered on this machine (``ray start``, or a
    test's ``ray.cluster_utils.Cluster``, even one since stopped): "local" keeps a run on a cluster of its own.
    ``ray.address=auto`` joins the machine's cluster on purpose.
    """
    import ray

    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        num_cpus = config.num_cpus or max(MIN_LOCAL_CPUS, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=True)
    logger.info("ray cluster resources: %s", ray.cluster_resources())
