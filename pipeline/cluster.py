"""Dask clusters for a dataset run: a LocalCluster by default, or an existing one.

Across GPU machines, start a scheduler and one worker per GPU, each worker
declaring the GPU resource, e.g.::

    dask scheduler --port 8786
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1
    CUDA_VISIBLE_DEVICES=1 dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1
    dask worker tcp://HOST:8786 --nthreads 4              # CPU-only: annotate/export

and run ``daamset run CONFIG --out RUN_DIR --scheduler tcp://HOST:8786``. The
run folder must be on a file system every worker sees (NFS, a shared volume).
dask-jobqueue (``SLURMCluster(... worker_extra_args=["--resources", "GPU=1"])``)
and dask-kubernetes start the same workers from a batch system.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster, get_worker

from pipeline.config import ClusterConfig

__all__ = ["dask_client", "gpu_resource_available", "current_worker_name", "INLINE"]

log = logging.getLogger(__name__)

# cluster.scheduler value that runs every task in this process, in a plain loop
# (no Dask): the reference meaning of a run, and handy for debugging.
INLINE = "inline"


@contextmanager
def dask_client(config: ClusterConfig) -> Iterator[Client]:
    """A Dask client for the run: to ``config.scheduler`` if set, else to a new LocalCluster."""
    if config.scheduler:
        log.info("connecting to the Dask scheduler at %s", config.scheduler)
        try:
            client = Client(config.scheduler, timeout="20s")
        except OSError as err:
            raise ConnectionError(f"cannot reach the Dask scheduler at {config.scheduler}: {err}") from err
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        dashboard_address=":0" if config.dashboard else None,
        silence_logs=logging.WARNING,
    )
    client = Client(cluster)
    if config.dashboard:
        log.info("Dask dashboard: %s", client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def gpu_resource_available(client: Client) -> bool:
    """Whether any worker of the cluster declared a ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers.values())


def current_worker_name() -> str:
    """The address of the Dask worker running this code, or "local" outside Dask."""
    try:
        return get_worker().address
    except ValueError:  # not inside a worker
        return "local"
