"""The Ray Data runner of `predict_dataset` (``runner="ray"``): decode tasks feeding an actor
pool of model replicas, each loading the weights once; the driver writes the same Parquet
shards as the local runner (`videoswin_tf.video.dataset`).

Without an address it starts a local Ray on this machine's CPUs (no dashboard; set
``RAY_USAGE_STATS_ENABLED=0`` to keep usage reporting off, as the tests do); with one it joins a
running cluster (``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the
others). Needs the ``ray`` extra (``pip install videoswin-tf[ray]``).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from videoswin_tf.video.dataset import (
    DatasetItem,
    DatasetSettings,
    class_names,
    decode_item,
    model_row,
)
from videoswin_tf.video.extra import import_extra

# CPUs a decode task reserves (a replica reserves 1): two decode tasks share a CPU.
DECODE_CPUS = 0.5


def run_ray(
    load_model: Callable[[], Any],
    todo: list[DatasetItem],
    settings: DatasetSettings,
    writer,
    bar,
    address: str | None = None,
) -> tuple[float, float]:
    """Run ``todo`` on Ray Data, handing each row to ``writer`` and ``bar``; the seconds the
    replicas spent in the model and loading it (each summed over replicas).

    Raises:
        ConnectionError: no Ray cluster answers at ``address`` (one line, what to do).
    """
    ray = import_extra("ray")
    if not todo:
        return 0.0, 0.0
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as error:  # Ray's own text, then what to do
            raise ConnectionError(
                f"could not join the Ray cluster at {address} ({str(error).splitlines()[0]}); "
                "start one with ray start --head (README, Ray) and pass the address it prints, "
                "or leave --ray-address out for a local Ray"
            ) from None
    if bar.bar is None:  # quiet: Ray Data's own progress bars and logs off too
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        items = ray.data.from_items([{"item": pickle.dumps(item)} for item in todo])
        # Decode tasks ask for less CPU than the replicas: with equal resources Ray Data fuses
        # the two stages, and each replica would decode its videos between its model calls.
        decoded = items.map(_Decode(settings), num_cpus=DECODE_CPUS)
        rows = decoded.map_batches(
            _ModelReplica,
            fn_constructor_args=(load_model, settings),
            batch_size=1,
            batch_format="numpy",
            concurrency=settings.replicas,
            num_cpus=1,
        )
        model_seconds = load_seconds = 0.0
        for record in rows.iter_rows():
            row, seconds, loading = pickle.loads(record["row"])
            model_seconds += seconds
            load_seconds += loading
            writer.add(row)
            bar.update(row)
        return model_seconds, load_seconds
    finally:
        if started_here:
            ray.shutdown()


@dataclasses.dataclass(frozen=True)
class _Decode:
    """A decode task: a listed video -> its views (or error), pickled for the next stage."""

    settings: DatasetSettings

    def __call__(self, record: dict) -> dict:
        return {"decoded": pickle.dumps(decode_item(pickle.loads(record["item"]), self.settings))}


class _ModelReplica:
    """An actor holding one model: loads it once, then turns decoded videos into rows."""

    def __init__(self, load_model: Callable[[], Any], settings: DatasetSettings):
        started = time.perf_counter()
        self.model = load_model()
        self.load_seconds = time.perf_counter() - started  # reported with the first row
        self.settings = settings
        self.names = class_names(self.model, settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = []
        for payload in batch["decoded"]:
            started = time.perf_counter()
            row = model_row(self.model, pickle.loads(payload), self.settings, self.names)
            seconds = time.perf_counter() - started
            rows.append(pickle.dumps((row, seconds, self.load_seconds)))
            self.load_seconds = 0.0
        return {"row": np.array(rows, dtype=object)}
