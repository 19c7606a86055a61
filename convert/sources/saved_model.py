"""The seed's TensorFlow SavedModel folders (innat/VideoSwin v1 ``model.save(folder)``), whose
variables are read as data: nothing in the folder is loaded as a graph or run.

``variables/variables.{index,data-*}`` is a TensorFlow checkpoint; `tf.train.load_checkpoint`
reads its tensors, and its ``_CHECKPOINTABLE_OBJECT_GRAPH`` (a protocol buffer) says which
object owns each: the root model's attributes (`SEED_ATTRIBUTES`: ``patch_embed``,
``basic_layers/<i>``, ``norm``, ``head``) down to each variable's own name (``kernel``,
``gamma``, ``relative_position_bias_table``). The root's ``variables`` list is Keras 2's
``model.variables``, the order in which ``save_weights`` writes the seed's ``.h5``; so the
variables, grouped by owner and kept in that order, are the groups of the seed's ``.h5``
layout (`videoswin_tf.legacy_h5.SEED`), read from there as the seed's ``.h5`` files are:
config from shapes (`legacy_h5.seed_config`), then every weight checked by kind and shape
(`legacy_h5.assignments`). ``saved_model.pb`` (the graph) is never opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from videoswin_tf import legacy_h5
from videoswin_tf.convert.errors import CheckpointError
from videoswin_tf.convert.mapping.rules import extract
from videoswin_tf.convert.mapping.spec import ModelSpec, build_keras_model
from videoswin_tf.convert.sources.checkpoint import LoadedCheckpoint
from videoswin_tf.convert.sources.layout import Source
from videoswin_tf.weights_file import shown

SEED_SAVED_MODEL = Source(
    name="the seed's TensorFlow SavedModel folder (innat/VideoSwin v1), variables read as data",
    detect=lambda state: False,  # found by `sources.file_kind.identify` on the folder
    renames=(),
    reference="seed-keras2-saved-model",
)
VARIABLES = Path("variables") / "variables"  # the checkpoint's prefix inside the folder
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE = "VARIABLE_VALUE"  # the attribute under which a variable node keeps its tensor
# The seed model's attributes holding weights -> the `legacy_h5.SEED` model path they are.
SEED_ATTRIBUTES = {
    "patch_embed": "patch_embed",
    "basic_layers": "stages",
    "norm": "norm",
    "head": "head",
}
# Children every Keras 2 layer node has besides its attributes (lists of its variables, the
# saved functions and their captures); they lead to no weight by its own name.
BOOKKEEPING = {
    "variables",
    "trainable_variables",
    "non_trainable_variables",
    "regularization_losses",
    "keras_api",
    "signatures",
}


def read_saved_model(folder: Path):
    """The seed's SavedModel ``folder`` as a `LoadedCheckpoint` (canonical state, the layout
    named, ``file`` set for the seed's own model to restore).

    Raises:
        CheckpointError: ``variables/`` holds no readable checkpoint, its objects are not the
            seed's model, or its shapes fit no model.
    """
    groups = seed_groups(folder)
    try:
        config = legacy_h5.seed_config(groups)
    except legacy_h5.LayoutError as error:  # its first clause says what; the advice is ours
        raise CheckpointError(
            f"{folder}: its variables fit no model of the seed's: {str(error).split('; ')[0]}; "
            "pass the SavedModel folder the seed's model.save wrote"
        ) from None
    spec = ModelSpec.from_file_config(config, folder.name)
    model = build_keras_model(spec)
    pairs, problems = legacy_h5.assignments(model, groups, legacy_h5.SEED)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{folder}: its variables do not fit the seed's model their shapes give: "
            f"{problems[0]}{more}; pass the SavedModel folder the seed's model.save wrote"
        )
    for variable, value in pairs:
        variable.assign(value)
    window = "x".join(str(size) for size in spec.window_size)
    return LoadedCheckpoint(
        state=extract(model),
        source_layout=SEED_SAVED_MODEL.name,
        notes=[
            f"read {len(pairs)} variables from {VARIABLES} by the seed's object names "
            f"(videoswin_tf.legacy_h5); window {window} from the bias tables' rows"
        ],
        has_head=spec.num_classes is not None,
        source=SEED_SAVED_MODEL,
        file=folder,
    )


def seed_groups(folder: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """The variables of ``folder``'s checkpoint as the groups of the seed's ``.h5`` layout
    (`videoswin_tf.legacy_h5.Groups`): ``{"TFPatchEmbed3D": [("proj/kernel", value), ...],
    "TFBasicLayer1": [...], ..., "head": [...]}``, each in Keras 2's variable order.

    Raises:
        CheckpointError: no readable checkpoint, or not the seed's objects.
    """
    reader, graph = _read(folder)
    root = graph.nodes[0]
    children = {child.local_name: child.node_id for child in root.children}
    found = [name for name in SEED_ATTRIBUTES if name in children]
    if "variables" not in children or found != list(SEED_ATTRIBUTES):
        raise CheckpointError(
            f"{folder}: is a SavedModel of another model than the seed's (innat/VideoSwin v1): "
            f"its top-level objects are {shown(sorted(children))}, the seed's model has "
            f"{', '.join(SEED_ATTRIBUTES)}; pass a PyTorch checkpoint or the seed's own files"
        )
    order = {
        child.node_id: index
        for index, child in enumerate(_node(graph, children["variables"]).children)
    }
    owners = _owned_variables(graph, children)
    unowned = sorted(set(order) - set(owners))
    if unowned:
        raise CheckpointError(
            f"{folder}: {len(unowned)} of its model's variables belong to none of the seed's "
            f"layers ({', '.join(SEED_ATTRIBUTES)}); pass the SavedModel folder the seed's "
            "model.save wrote"
        )
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for node_id in sorted(order, key=order.get):
        group, name = owners[node_id]
        try:
            value = reader.get_tensor(_value_key(graph, node_id))
        except Exception as error:  # a damaged data file: TensorFlow's errors vary
            raise _damaged(folder, error) from None
        groups.setdefault(group, []).append((name, value))
    return groups


def _read(folder: Path):
    """The checkpoint reader of ``folder`` and its object graph (parsed as data)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = folder / VARIABLES
    if not Path(f"{prefix}.index").is_file():
        raise CheckpointError(
            f"{folder}: a SavedModel folder without {VARIABLES}.index, so it holds no "
            "variables to convert; copy the whole folder the seed's model.save wrote"
        )
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH))
    except Exception as error:  # TensorFlow's and protobuf's errors for damaged files vary
        raise _damaged(folder, error) from None
    nodes = len(graph.nodes)
    if not nodes or any(
        not 0 <= child.node_id < nodes for node in graph.nodes for child in node.children
    ):
        raise CheckpointError(
            f"{folder}: its variables' object graph names objects it does not hold; the folder "
            "is damaged or incomplete: copy it again"
        )
    return reader, graph


def _damaged(folder: Path, error: Exception) -> CheckpointError:
    """The one-line error for variables that TensorFlow could not read, with its reason."""
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return CheckpointError(
        f"{folder}: its variables ({VARIABLES}.*) could not be read ({reason}); the folder is "
        "damaged or incomplete: copy it again"
    )


def _owned_variables(graph, children: dict[str, int]) -> dict[int, tuple[str, str]]:
    """Variable node -> ``(group of the seed's .h5 layout, its path inside the group)``,
    walking each of `SEED_ATTRIBUTES` down its named attributes (breadth first, so the path is
    the shortest)."""
    group_of = {path: group for group, path in legacy_h5.SEED.groups}
    owners: dict[int, tuple[str, str]] = {}
    for attribute, path in SEED_ATTRIBUTES.items():
        roots = [(group_of[path], children[attribute])]
        if path == "stages":  # a list: one group per stage
            roots = [
                (group_of[path].format(index=index, number=index + 1), child.node_id)
                for index, child in enumerate(_node(graph, children[attribute]).children)
            ]
        for group, node_id in roots:
            for variable, name in _walk(graph, node_id):
                owners.setdefault(variable, (group, name))
    return owners


def _walk(graph, start: int):
    """``(variable node, path from start)`` for the variables below ``start`` by attribute
    names, breadth first, each once."""
    seen, queue = {start}, [(start, "")]
    while queue:
        node_id, path = queue.pop(0)
        node = _node(graph, node_id)
        if any(attribute.name == VALUE for attribute in node.attributes):
            yield node_id, path
        for child in node.children:
            name = child.local_name
            if name in BOOKKEEPING or name.startswith("_") or name.startswith("call_and_return"):
                continue
            if child.node_id not in seen:
                seen.add(child.node_id)
                queue.append((child.node_id, f"{path}/{name}" if path else name))


def _value_key(graph, node_id: int) -> str:
    return next(a.checkpoint_key for a in _node(graph, node_id).attributes if a.name == VALUE)


def _node(graph, node_id: int) -> Any:
    return graph.nodes[node_id]  # in range: `_read` checked every child's id
