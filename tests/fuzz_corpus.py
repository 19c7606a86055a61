"""A seeded corpus of damaged checkpoints, and a runner that feeds them to ``vswin-convert``.

Every case derives from one valid checkpoint of the small test model (`conftest.SMALL_SPEC`,
authors' layout, `videoswin_tf.convert.references.synthetic`): ``case(seed, index)`` picks the
mutation ``MUTATIONS[index % len(MUTATIONS)]`` and draws its details from a generator seeded with
``(seed, index)``, so a failing case is reproduced from its two numbers alone.

`run_corpus` converts each case in a worker process through the CLI (click's CliRunner, with
parity on a 4x32x32 clip) and judges it: exit 0 with a PASS parity report and the weights
written, or exit 2 with a one-line ``error:`` and nothing written. A traceback, exit 1, a case
running over the time limit (the worker is killed and restarted) or a worker whose peak RSS
passes the memory limit is a failure.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import multiprocessing
import queue
import random
import resource
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

CASE_LIMIT_S = 60
MEMORY_LIMIT_BYTES = 4 * 2**30
CASES_PER_WORKER = 250  # a fresh worker now and then keeps TensorFlow's caches small
WORKERS = 2
PARITY_ARGS = ("--parity-frames", "4", "--parity-size", "32")
LISTED = "  - "  # an error that lists several keys puts one per line under it
# Options a mutation's cases are converted with, beside the output and parity ones.
OPTIONS = {"ema_buffers_averaged": ("--ema",)}


@dataclasses.dataclass
class Outcome:
    """How one case ended: ``problem`` is None when it ended as it must."""

    index: int
    mutation: str
    exit_code: int | None
    last_line: str
    problem: str | None
    seconds: float
    peak_rss: int


# --- the corpus ---------------------------------------------------------------------------


class _Base:
    """The valid checkpoint (as a dict and as torch.save bytes), made once per process."""

    _made: _Base | None = None

    def __init__(self):
        from conftest import SMALL_SPEC

        from videoswin_tf.convert.references.synthetic import make_checkpoint

        self.checkpoint = make_checkpoint(SMALL_SPEC, layout="authors")
        self.data = _save(self.checkpoint)

    @classmethod
    def get(cls) -> _Base:
        if cls._made is None:
            cls._made = cls()
        return cls._made


def _save(checkpoint: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def _edited(edit: Callable[[random.Random, dict], object]) -> Callable[[random.Random], bytes]:
    """A mutation that edits a deep copy of the checkpoint dict, then saves it."""

    def mutate(rng: random.Random) -> bytes:
        import copy

        checkpoint = copy.deepcopy(_Base.get().checkpoint)
        result = edit(rng, checkpoint)
        return _save(checkpoint if result is None else result)

    return mutate


def _pick_key(rng: random.Random, state: dict) -> str:
    return rng.choice(sorted(state))


def _flip_bytes(rng: random.Random) -> bytes:
    data = bytearray(_Base.get().data)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _truncate(rng: random.Random) -> bytes:
    data = _Base.get().data
    return data[: rng.randrange(len(data))]


def _zero_block(rng: random.Random) -> bytes:
    data = bytearray(_Base.get().data)
    start = rng.randrange(len(data))
    length = rng.randint(1, 4096)
    data[start : start + length] = bytes(len(data[start : start + length]))
    return bytes(data)


def _members() -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(_Base.get().data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def _delete_member(rng: random.Random) -> bytes:
    entries = [(info.filename, data) for info, data in _members()]
    del entries[rng.randrange(len(entries))]
    return _zip(entries)


def _duplicate_member(rng: random.Random) -> bytes:
    entries = [(info.filename, data) for info, data in _members()]
    name, data = rng.choice(entries)
    other = rng.choice(entries)[1]
    entries.insert(rng.randrange(len(entries) + 1), (name, rng.choice([data, other, b""])))
    return _zip(entries)


def _rename_member(rng: random.Random) -> bytes:
    entries = [(info.filename, data) for info, data in _members()]
    index = rng.randrange(len(entries))
    name, data = entries[index]
    entries[index] = (rng.choice([name + "x", name.upper(), "other/" + name, name[:-1]]), data)
    return _zip(entries)


def _swap_members(rng: random.Random) -> bytes:
    entries = [(info.filename, data) for info, data in _members()]
    first, second = rng.sample(range(len(entries)), 2)
    names = [name for name, _ in entries]
    names[first], names[second] = names[second], names[first]
    return _zip([(name, data) for name, (_, data) in zip(names, entries, strict=False)])


def _lying_size(rng: random.Random) -> bytes:
    """A member's size in the central directory (and maybe its local header) far beyond the
    file: a reader that trusts it allocates or reads what is not there."""
    data = bytearray(_Base.get().data)
    info = rng.choice([info for info, _ in _members()])
    size = rng.choice([2**31 - 1, 2**32 - 2, min(len(data) * 1000, 2**32 - 1), info.file_size + 1])
    record = _central_record(data, info.filename)
    also_local = rng.random() < 0.5
    for field in rng.choice([(20,), (24,), (20, 24)]):  # compressed, uncompressed size
        struct.pack_into("<I", data, record + field, size)
        if also_local:  # the same fields sit 2 bytes earlier in the local header
            struct.pack_into("<I", data, info.header_offset + field - 2, size)
    return bytes(data)


def _central_record(data: bytearray, name: str) -> int:
    """Offset of ``name``'s central directory record."""
    offset = data.find(b"PK\x01\x02")
    while True:
        length = struct.unpack_from("<H", data, offset + 28)[0]
        if bytes(data[offset + 46 : offset + 46 + length]).decode() == name:
            return offset
        offset = data.find(b"PK\x01\x02", offset + 4)


def _wrong_dtype(rng: random.Random, checkpoint: dict) -> None:
    import torch

    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    dtype = rng.choice(
        [
            torch.int32,
            torch.int64,
            torch.bool,
            torch.complex64,
            torch.float64,
            torch.bfloat16,
            torch.uint8,
            torch.int8,
            torch.float16,
        ]
    )
    state[key] = state[key].to(dtype)


def _wrong_shape(rng: random.Random, checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    tensor = state[key]
    state[key] = rng.choice(
        [
            lambda t: t.reshape(-1),
            lambda t: t.reshape(1, *t.shape),
            lambda t: t.t() if t.ndim == 2 else t[..., None],
            lambda t: t[: max(t.shape[0] - 1, 0)],
            lambda t: t.repeat(2, *[1] * (t.ndim - 1)) if t.ndim else t.reshape(1, 1),
            lambda t: t.reshape(-1)[0],
        ]
    )(tensor)


def _empty_tensor(rng: random.Random, checkpoint: dict) -> None:
    import torch

    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    state[key] = rng.choice(
        [torch.empty(0), torch.empty(0, 3), torch.empty(state[key].shape[0], 0)]
    )


def _rename_key(rng: random.Random, checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    new = rng.choice(
        [
            key + "_",
            key.replace("backbone.", "", 1),
            key.replace("layers.0", "layers.9"),
            key.replace("blocks.0", "blocks.7"),
            "module." + key,
            key.replace(".weight", ".bias"),
            key.upper(),
        ]
    )
    state[new] = state.pop(key)


def _drop_key(rng: random.Random, checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    del state[_pick_key(rng, state)]


def _extra_key(rng: random.Random, checkpoint: dict) -> None:
    import torch

    state = checkpoint["state_dict"]
    state[rng.choice(["backbone.extra", "cls_head.extra", "optimizer", "backbone.norm.extra"])] = (
        torch.zeros(rng.randint(0, 4))
    )


def _extra_nesting(rng: random.Random, checkpoint: dict) -> object:
    state = checkpoint["state_dict"]
    shape = rng.randrange(4)
    if shape == 0:
        return {"state_dict": checkpoint}
    if shape == 1:
        return {"model": {"state_dict": state}}
    if shape == 2:
        key = _pick_key(rng, state)
        state[key] = {"value": state[key]}
        return None
    return [checkpoint]


def _odd_values(rng: random.Random, checkpoint: dict) -> None:
    import numpy as np

    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    state[key] = rng.choice([None, 1.5, "weights", [1, 2], np.float32(1.0), b"\x00", {1, 2}])


def _extreme_values(rng: random.Random, checkpoint: dict) -> None:
    state = checkpoint["state_dict"]
    key = _pick_key(rng, state)
    tensor = state[key]
    if tensor.is_floating_point() and tensor.numel():
        flat = tensor.view(-1)
        flat[rng.randrange(flat.numel())] = rng.choice(
            [float("nan"), float("inf"), -float("inf"), 3e38, -3e38, 1e-45, 0.0]
        )
    elif tensor.numel():
        flat = tensor.view(-1)
        flat[rng.randrange(flat.numel())] = rng.choice([-1, 2**40, tensor.max().item() + 1])


def _numpy_meta(rng: random.Random, checkpoint: dict) -> None:
    import numpy as np

    checkpoint["meta"]["iter"] = np.int64(rng.randrange(10**6))
    checkpoint["meta"]["score"] = np.float64(rng.random())
    checkpoint["meta"]["array"] = np.arange(rng.randint(0, 6)).reshape(-1, 1)


def _ema_buffers(rng: random.Random, checkpoint: dict) -> None:
    """Averaged weights as training runs leave them, sometimes damaged: mmcv 1.x EMAHook
    buffers (``ema_`` + the key with ``.`` as ``_``) for some or all weights, a stray or
    non-tensor buffer, or an mmengine ``ema_state_dict`` of any shape."""
    import torch

    state = checkpoint["state_dict"]
    keys = sorted(key for key in state if state[key].is_floating_point())
    chosen = rng.sample(keys, rng.randint(1, len(keys)))
    for key in chosen:
        state["ema_" + key.replace(".", "_")] = state[key] * rng.choice([1.0, 0.5])
    damage = rng.randrange(5)
    if damage == 1:
        state[rng.choice(["ema_backbone_stray", "ema_", "ema_cls_head_fc_cls"])] = torch.ones(2)
    elif damage == 2:
        state["ema_" + chosen[0].replace(".", "_")] = rng.choice([None, 1.0, "x", torch.ones(0)])
    elif damage == 3:  # mmengine's layout instead of mmcv's
        for key in [key for key in state if key.startswith("ema_")]:
            del state[key]
        checkpoint["ema_state_dict"] = rng.choice(
            [
                {"steps": torch.tensor(7), **{f"module.{k}": v for k, v in state.items()}},
                {},
                {"module.backbone.x": torch.ones(1)},
                [1, 2],
                None,
            ]
        )


def _argument_objects(rng: random.Random, checkpoint: dict) -> object:
    """The run's own objects beside the weights: torchvision's ``args`` Namespace, a yacs
    ``CfgNode``, an mmengine ``message_hub`` of HistoryBuffers, or a class the loader refuses;
    the weights under ``state_dict`` or ``model``."""
    import argparse
    import fractions

    import numpy as np
    from mmengine.logging import HistoryBuffer
    from yacs.config import CfgNode

    buffer = HistoryBuffer()
    for _ in range(rng.randint(0, 3)):
        buffer.update(rng.random(), count=rng.randint(1, 4))
    node = CfgNode({"MODEL": {"TYPE": "swin", "DEPTHS": [2, 2, 6, 2]}, "LR": rng.random()})
    extras = {
        "args": argparse.Namespace(lr=rng.random(), model="swin3d_t", sizes=(128, 171), amp=True),
        "config": node,
        "message_hub": {"log_scalars": {"train/loss": buffer}, "runtime_info": {"epoch": 1}},
        "odd": fractions.Fraction(rng.randint(1, 9), 7),
        "numpy": np.arange(rng.randint(0, 4)),
    }
    chosen = rng.sample(sorted(extras), rng.randint(1, len(extras)))
    container = rng.choice(["state_dict", "model"])
    result = {container: checkpoint["state_dict"], "epoch": rng.randrange(100)}
    return result | {key: extras[key] for key in chosen}


MUTATIONS: dict[str, Callable[[random.Random], bytes]] = {
    "flip_bytes": _flip_bytes,
    "truncate": _truncate,
    "zero_block": _zero_block,
    "delete_member": _delete_member,
    "duplicate_member": _duplicate_member,
    "rename_member": _rename_member,
    "swap_members": _swap_members,
    "lying_size": _lying_size,
    "wrong_dtype": _edited(_wrong_dtype),
    "wrong_shape": _edited(_wrong_shape),
    "empty_tensor": _edited(_empty_tensor),
    "rename_key": _edited(_rename_key),
    "drop_key": _edited(_drop_key),
    "extra_key": _edited(_extra_key),
    "extra_nesting": _edited(_extra_nesting),
    "odd_values": _edited(_odd_values),
    "extreme_values": _edited(_extreme_values),
    "numpy_meta": _edited(_numpy_meta),
    "ema_buffers": _edited(_ema_buffers),
    "ema_buffers_averaged": _edited(_ema_buffers),  # converted with --ema (`OPTIONS`)
    "argument_objects": _edited(_argument_objects),
}


def case(seed: int, index: int) -> tuple[str, bytes]:
    """The mutation's name and the damaged file's bytes for case ``index`` of ``seed``."""
    name = list(MUTATIONS)[index % len(MUTATIONS)]
    return name, MUTATIONS[name](random.Random(f"{seed}:{index}"))


# --- running it ---------------------------------------------------------------------------


def judge(exit_code: int | None, output: str, exception: BaseException | None, files: set[str]):
    """None when a case ended as it must, else what went wrong."""
    lines = output.strip().splitlines()
    last = lines[-1] if lines else ""
    if exception is not None and not isinstance(exception, SystemExit):
        return f"raised {type(exception).__name__}: {exception}"
    if exit_code == 0:
        if "PASS" not in output:
            return "exit 0 without a passing parity report"
        if files != {"out.weights.h5", "out.parity.json"}:
            return f"exit 0 but wrote {sorted(files)}"
        return None
    if exit_code != 2:
        return f"exit {exit_code}: {last}"
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    listing = lines[errors[-1] + 1 :] if errors else []
    if len(errors) != 1 or not all(line.startswith(LISTED) for line in listing):
        return f"exit 2 without one error line at the end: {output[-500:]!r}"
    if "Traceback" in output:
        return "traceback in the output"
    if files:
        return f"exit 2 but left {sorted(files)}"
    return None


def _run_case(seed: int, index: int, folder: Path) -> tuple[str, int | None, str, str | None]:
    from click.testing import CliRunner

    from videoswin_tf.convert.cli import main

    name, data = case(seed, index)
    pth = folder / f"case{index}.pth"
    pth.write_bytes(data)
    out_dir = folder / f"out{index}"
    out_dir.mkdir()
    arguments = ["--pth", str(pth), "--out", str(out_dir / "out.weights.h5"), *PARITY_ARGS]
    result = CliRunner().invoke(main, [*arguments, *OPTIONS.get(name, ())])
    files = {path.name for path in out_dir.iterdir()}
    problem = judge(result.exit_code, result.output, result.exception, files)
    lines = result.output.strip().splitlines()
    for path in out_dir.iterdir():
        path.unlink()
    out_dir.rmdir()
    pth.unlink()
    return name, result.exit_code, lines[-1] if lines else "", problem


def _worker(connection, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        while True:
            index = connection.recv()
            if index is None:
                return
            start = time.perf_counter()
            name, exit_code, last, problem = _run_case(seed, index, Path(folder))
            peak = _peak_rss()
            connection.send((name, exit_code, last, problem, time.perf_counter() - start, peak))


def run_corpus(
    seed: int, indices: list[int], log: Callable[[str], None] = lambda _: None
) -> list[Outcome]:
    """Run the cases ``indices`` of ``seed`` in `WORKERS` worker processes, each taking the
    next case when it is done with one, each case limited to `CASE_LIMIT_S`; outcomes in the
    order of their index."""
    pending = queue.SimpleQueue()
    for index in indices:
        pending.put(index)
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        shares = [pool.submit(_run_share, seed, pending, log) for _ in range(WORKERS)]
        outcomes = [outcome for share in shares for outcome in share.result()]
    return sorted(outcomes, key=lambda outcome: outcome.index)


def _run_share(seed: int, pending: queue.SimpleQueue, log: Callable[[str], None]) -> list[Outcome]:
    """Run cases from ``pending`` until it is empty in one worker process, restarted after a
    hang or a crash and every `CASES_PER_WORKER` cases."""
    context = multiprocessing.get_context("spawn")
    outcomes: list[Outcome] = []
    worker = connection = None
    served = 0
    try:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                break
            if worker is None or served == CASES_PER_WORKER:
                _stop(worker, connection)
                connection, child = context.Pipe()
                worker = context.Process(target=_worker, args=(child, seed), daemon=True)
                worker.start()
                served = 0
            connection.send(index)
            served += 1
            reply = _wait(worker, connection, CASE_LIMIT_S + (60 if served == 1 else 0))
            if isinstance(reply, tuple):
                name, exit_code, last, problem, seconds, peak = reply
                if problem is None and peak > MEMORY_LIMIT_BYTES:
                    problem = f"peak RSS {peak / 2**30:.1f} GiB"
            else:
                name = list(MUTATIONS)[index % len(MUTATIONS)]
                exit_code, last, seconds, peak, problem = None, "", float(CASE_LIMIT_S), 0, reply
                worker.kill()
                worker.join()
                worker = None
            outcomes.append(Outcome(index, name, exit_code, last, problem, seconds, peak))
            log(f"case {index} {name}: exit {exit_code} in {seconds:.2f} s: {problem or last}")
    finally:
        _stop(worker, connection)
    return outcomes


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the peak of the forked parent, here the whole test run)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _wait(worker, connection, limit_s: float) -> tuple | str:
    """The worker's reply, or what went wrong: it died, or ran past ``limit_s``
    (start-up included for its first case)."""
    deadline = time.monotonic() + limit_s
    while not connection.poll(0.2):
        if not worker.is_alive():
            return f"the worker died (exit code {worker.exitcode})"
        if time.monotonic() > deadline:
            return f"no result within {CASE_LIMIT_S} s"
    return connection.recv()


def _stop(worker, connection) -> None:
    if worker is None:
        return
    connection.send(None)
    worker.join(30)
    if worker.is_alive():
        worker.kill()
        worker.join()
