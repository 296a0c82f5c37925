"""The Ray cluster a search (or `nas serve`) runs on: a local Ray of its own, a cluster joined at
--address, or the Ray session the caller started; and what one trial asks of it.

    cluster = connect(address=None, dashboard=True)    # local Ray, or join a cluster
    check_resources(cluster, Resources(cpus=1, gpus=0))
    disconnect(cluster)                               # shuts down only a Ray that connect() started

Imports Ray's core only, not Ray Tune.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import ray

from nas.errors import InputError, SearchStopped
from nas.quiet import stderr_silenced


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpus: float = 1
    gpus: float = 0
    tpus: int = 0  # Ray's "TPU" resource, one per chip

    def bundle(self) -> dict[str, float]:
        bundle = {"CPU": self.cpus, "GPU": self.gpus}
        if self.tpus:
            bundle["TPU"] = self.tpus
        return bundle


@dataclass(frozen=True)
class Cluster:
    dashboard_url: str | None
    resources: dict[str, float]  # the whole cluster's, e.g. {"CPU": 2.0, "memory": ...}
    largest_node_cpus: float  # a task cannot use more CPUs than one node has
    address: str | None
    owned: bool = True  # started by connect(), so disconnect() shuts it down; else the caller's Ray session


def connect(address: str | None, dashboard: bool, num_cpus: int | None = None, verbose: bool = False) -> Cluster:
    """Starts a local Ray instance, or joins a running cluster at `address`. A Ray session this
    process started already (`ray.init()` in a notebook, say) is used as it is, and left running."""
    if ray.is_initialized():  # a cluster of several nodes is one to join, as --address joins it
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        return _cluster(ray.get_runtime_context().gcs_address if len(alive) > 1 else None, owned=False)
    if address:
        check_reachable(address)
    try:
        with stderr_silenced():  # Ray's C++ side logs each failed attempt to connect
            # Without --address, a Ray of our own ("local"): ray.init() alone would join whatever
            # `ray start` left in /tmp/ray, and hang if that cluster has gone.
            context = ray.init(
                address=address or "local",
                num_cpus=None if address else num_cpus,
                include_dashboard=dashboard if not address else None,
                dashboard_host="127.0.0.1",
                log_to_driver=verbose,
                logging_level="info" if verbose else "error",
                configure_logging=True,
            )
    except Exception as e:  # Ray raises plain Exception too (a node that timed out during start-up)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not address:
            raise SearchStopped(
                f"could not start Ray on this machine: {message} (an overloaded machine can cause this: try again)"
            ) from None
        hint = (
            "; `ray start` turns token authentication on: run nas with RAY_AUTH_MODE=token (the token is read "
            "from RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token)"
            if address and os.environ.get("RAY_AUTH_MODE") != "token"
            else ""
        )
        raise InputError(f"address: cannot connect to a Ray cluster at {address!r}: {message}{hint}") from None
    # Tune logs a traceback for every trial whose worker died; nas records a one-line reason instead.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    return _cluster(address, owned=True, url=getattr(context, "dashboard_url", None) or None)


def _cluster(address: str | None, owned: bool, url: str | None = None) -> Cluster:
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    return Cluster(
        f"http://{url}" if url and not url.startswith("http") else url, ray.cluster_resources(), largest, address, owned
    )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a plain TCP connection tells at once."""
    if address.startswith("ray://"):
        raise InputError(
            f"address: got {address!r}, but Ray Client (ray://) runs Tune on the cluster, away from "
            "the run directory; expected the head's HOST:6379 (run nas on a node of the cluster)"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise InputError(f"address: got {address!r}, expected HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise InputError(
            f"address: cannot reach a Ray cluster at {address!r} ({reason}); expected a running "
            f"Ray head there (`ray start --head` prints its address)"
        ) from None


def disconnect(cluster: Cluster | None = None) -> None:
    """Shuts down the Ray session connect() started (not one the caller had started)."""
    if ray.is_initialized() and (cluster is None or cluster.owned):
        ray.shutdown()


def default_workers(cluster: Cluster, resources: Resources) -> int:
    """As many concurrent trials as the cluster's CPUs (and GPUs, TPUs) allow."""
    limits = [cluster.resources.get("CPU", 1) / resources.cpus if resources.cpus else float("inf")]
    if resources.gpus:
        limits.append(cluster.resources.get("GPU", 0) / resources.gpus)
    if resources.tpus:
        limits.append(cluster.resources.get("TPU", 0) / resources.tpus)
    return max(1, int(min(limits)))


def check_resources(cluster: Cluster, resources: Resources) -> None:
    """A trial that asks for what no node has would wait forever: refuse it now."""
    for flag, key, wanted, have in (
        ("cpus_per_trial", "CPU", resources.cpus, cluster.largest_node_cpus),
        ("gpus_per_trial", "GPU", resources.gpus, cluster.resources.get("GPU", 0)),
        ("tpu", "TPU", resources.tpus, cluster.resources.get("TPU", 0)),
    ):
        if wanted and have < wanted:
            where = "its largest node has" if key == "CPU" else "the Ray cluster has"
            raise InputError(
                f"{flag}: a trial asks for {wanted:g} {key}, but {where} {have:g}; expected at most {have:g}"
            )
