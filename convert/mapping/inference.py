"""The architecture a checkpoint's tensor shapes describe.

`infer_spec` reads a `ModelSpec` off a canonical state dict (embed_dim and patch from the patch
embedding, depths from counting blocks, heads and window from the relative position bias tables,
classes from the head); `spec_disagreements` lists every way a config contradicts them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from videoswin_tf.convert.mapping.rules import HEAD_KEY, PATCH_KEY
from videoswin_tf.convert.mapping.spec import ModelSpec
from videoswin_tf.convert.sources.checkpoint import CheckpointError
from videoswin_tf.layers.windows import bias_table_size, relative_position_index

TABLE_KEY = "backbone.layers.{i}.blocks.{j}.attn.relative_position_bias_table"
INDEX_KEY = "backbone.layers.{i}.blocks.{j}.attn.relative_position_index"
BLOCK_PATTERN = re.compile(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class _Observed:
    """What a canonical state dict's tensor shapes say, with the keys they come from."""

    embed_dim: int
    patch_size: tuple[int, int, int]
    patch_source: str
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    table_rows: int
    table_source: str
    index: np.ndarray | None
    index_source: str | None
    num_classes: int | None
    head_source: str | None


def _observe(state: dict[str, np.ndarray]) -> _Observed:
    patch = _patch_embedding(state)
    depths = _depths(state)
    num_heads, rows = _bias_tables(state, depths, channels=int(patch.shape[0]))
    head = _classifier(state)
    table_key = TABLE_KEY.format(i=0, j=0)
    index_key = INDEX_KEY.format(i=0, j=0)
    return _Observed(
        embed_dim=int(patch.shape[0]),
        patch_size=tuple(int(p) for p in patch.shape[2:]),
        patch_source=_source(PATCH_KEY, patch),
        depths=depths,
        num_heads=num_heads,
        table_rows=rows,
        table_source=_source(table_key, state[table_key]),
        index=state.get(index_key),
        index_source=_source(index_key, state[index_key]) if index_key in state else None,
        num_classes=None if head is None else int(head.shape[0]),
        head_source=None if head is None else _source(HEAD_KEY, head),
    )


def _patch_embedding(state: dict[str, np.ndarray]) -> np.ndarray:
    """The Conv3d ``[C, 3, Pd, Ph, Pw]`` of the patch embedding."""
    if PATCH_KEY not in state:
        raise CheckpointError(
            f"cannot read the architecture: {PATCH_KEY} is missing (not a Video Swin backbone?)"
        )
    patch = state[PATCH_KEY]
    if patch.ndim != 5 or patch.shape[1] != 3 or 0 in patch.shape:
        raise CheckpointError(
            f"{PATCH_KEY} has shape {list(patch.shape)}; a Video Swin patch embedding is a "
            f"Conv3d [C, 3, Pd, Ph, Pw]"
        )
    return patch


def _bias_tables(
    state: dict[str, np.ndarray], depths: tuple[int, ...], channels: int
) -> tuple[tuple[int, ...], int]:
    """Heads per stage and the rows every block's bias table shares; stage ``i`` has
    ``channels << i`` channels, which its heads must divide."""
    rows = None
    for i, depth in enumerate(depths):
        for j in range(depth):
            table = _bias_table(state, TABLE_KEY.format(i=i, j=j), channels << i)
            if rows is None:
                rows = table.shape[0]
            elif table.shape[0] != rows:
                raise CheckpointError(
                    f"{TABLE_KEY.format(i=i, j=j)} has {table.shape[0]} rows but "
                    f"{TABLE_KEY.format(i=0, j=0)} has {rows}: the blocks disagree on the "
                    f"window size"
                )
    num_heads = tuple(int(state[TABLE_KEY.format(i=i, j=0)].shape[1]) for i in range(len(depths)))
    return num_heads, int(rows)


def _bias_table(state: dict[str, np.ndarray], key: str, channels: int) -> np.ndarray:
    """The table ``[rows, heads]`` at ``key``, with heads dividing ``channels``."""
    if key not in state:
        raise CheckpointError(f"cannot read the architecture: {key} is missing")
    table = state[key]
    heads = table.shape[1] if table.ndim == 2 else 0
    if not (table.shape[0] and heads and channels % heads == 0):
        raise CheckpointError(
            f"{key} has shape {list(table.shape)}; a relative position bias table is "
            f"[rows, heads] with heads dividing the stage's {channels} "
            f"channels (from {_source(PATCH_KEY, state[PATCH_KEY])})"
        )
    return table


def _classifier(state: dict[str, np.ndarray]) -> np.ndarray | None:
    """The head's Linear ``[classes, channels]``, or None for a backbone-only checkpoint."""
    head = state.get(HEAD_KEY)
    if head is not None and (head.ndim != 2 or 0 in head.shape):
        raise CheckpointError(
            f"{HEAD_KEY} has shape {list(head.shape)}; the classifier is a Linear "
            f"[classes, channels]"
        )
    return head


def _depths(state: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Blocks per stage, counted from ``backbone.layers.i.blocks.j.*`` keys."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = BLOCK_PATTERN.match(key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if not blocks:
        raise CheckpointError(
            "cannot read the architecture: no backbone.layers.<i>.blocks.<j>.* keys"
        )
    if sorted(blocks) != list(range(len(blocks))):
        raise CheckpointError(f"backbone.layers stages {sorted(blocks)} are not numbered 0, 1, ...")
    for stage, found in sorted(blocks.items()):
        if sorted(found) != list(range(len(found))):
            raise CheckpointError(
                f"backbone.layers.{stage} has blocks {sorted(found)}, not numbered 0, 1, ..."
            )
    return tuple(len(blocks[stage]) for stage in range(len(blocks)))


def _source(key: str, tensor: np.ndarray) -> str:
    return f"{key} {list(tensor.shape)}"


def _window_fits(window: tuple[int, ...], seen: _Observed) -> bool:
    """Whether ``window`` gives the checkpoint's table length and (if stored) index."""
    if bias_table_size(window) != seen.table_rows:
        return False
    return seen.index is None or (
        seen.index.shape == (math.prod(window),) * 2
        and np.array_equal(seen.index, relative_position_index(window))
    )


def _window_candidates(seen: _Observed) -> list[tuple[int, int, int]]:
    """Every window whose table (and stored index, if any) matches the checkpoint's."""
    odd_divisors = [d for d in range(1, seen.table_rows + 1, 2) if seen.table_rows % d == 0]
    windows = []
    for a in odd_divisors:
        for b in odd_divisors:
            c, remainder = divmod(seen.table_rows, a * b)
            if remainder == 0 and c % 2 == 1:
                window = ((a + 1) // 2, (b + 1) // 2, (c + 1) // 2)
                if seen.index is None or seen.index.shape[0] == math.prod(window):
                    windows.append(window)
    return [window for window in windows if _window_fits(window, seen)]


def _checkpoint_window(seen: _Observed) -> tuple[int, int, int] | list[tuple[int, int, int]]:
    """The checkpoint's window, or the candidates left when it cannot be pinned down (those
    with ``Wh == Ww`` if there are any)."""
    candidates = _window_candidates(seen)
    square = [w for w in candidates if w[1] == w[2]]
    for narrowed in (candidates, square, [w for w in square if w[1] == 7]):
        if len(narrowed) == 1:
            return narrowed[0]
    return square or candidates


def _window_source(seen: _Observed) -> str:
    return seen.table_source + (f" and {seen.index_source}" if seen.index_source else "")


def infer_spec(state: dict[str, np.ndarray]) -> ModelSpec:
    """The `ModelSpec` (named ``"inferred"``) that a canonical state dict's shapes describe.

    embed_dim and patch size come from the patch embedding Conv3d, depths from counting
    blocks, heads from the bias tables' second dimension, the window from the bias table
    length ``(2Wd-1)(2Wh-1)(2Ww-1)`` and the stored ``relative_position_index`` (which pins
    it exactly; without it, ``Wh == Ww`` and then ``Wh == Ww == 7`` are assumed to settle
    ties), classes from ``cls_head.fc_cls.weight`` (None without a head).

    Raises:
        CheckpointError: a key the architecture is read from is missing or malformed, or the
            window cannot be determined (pass a config then).
    """
    seen = _observe(state)
    window = _checkpoint_window(seen)
    if isinstance(window, list):
        found = ", ".join(str(w) for w in window) or "none"
        raise CheckpointError(
            f"cannot tell the window size from {_window_source(seen)}: matching windows "
            f"{found}; pass a config (--config) that names it"
        )
    return ModelSpec(
        name="inferred",
        embed_dim=seen.embed_dim,
        depths=seen.depths,
        num_heads=seen.num_heads,
        window_size=window,
        patch_size=seen.patch_size,
        num_classes=seen.num_classes,
    )


def spec_disagreements(config: ModelSpec, state: dict[str, np.ndarray]) -> list[str]:
    """Every way ``config`` contradicts the checkpoint's tensors, one line each (empty when
    they agree). Compared: embed_dim, patch_size, depths, num_heads, window_size and
    num_classes (a backbone-only checkpoint fits any head). drop_path_rate and the clip are
    not visible in weights.

    Raises:
        CheckpointError: as `infer_spec`, except that an undetermined window is no error here.
    """
    seen = _observe(state)
    lines = []

    def compare(field: str, ours: Any, theirs: Any, source: str) -> None:
        if ours != theirs:
            lines.append(f"{field}: config {ours}, checkpoint {theirs} (from {source})")

    compare("embed_dim", config.embed_dim, seen.embed_dim, seen.patch_source)
    compare("patch_size", tuple(config.patch_size), seen.patch_size, seen.patch_source)
    compare("depths", tuple(config.depths), seen.depths, "backbone.layers.<i>.blocks.<j>.* keys")
    compare(
        "num_heads",
        tuple(config.num_heads),
        seen.num_heads,
        "backbone.layers.<i>.blocks.0.attn.relative_position_bias_table [rows, heads]",
    )
    window = tuple(config.window_size)
    if not _window_fits(window, seen):
        theirs = _checkpoint_window(seen)
        if isinstance(theirs, tuple):
            compare("window_size", window, theirs, _window_source(seen))
        else:
            tokens = math.prod(window)
            index = f" and a {tokens}x{tokens} index" if seen.index is not None else ""
            lines.append(
                f"window_size: config {window} needs a bias table of {bias_table_size(window)} rows"
                f"{index}, checkpoint has {_window_source(seen)}"
            )
    if seen.num_classes is not None and config.num_classes != seen.num_classes:
        ours = "None (backbone only)" if config.num_classes is None else config.num_classes
        compare("num_classes", ours, seen.num_classes, seen.head_source)
    return lines
