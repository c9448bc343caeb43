"""Find ONNX external-data references from the model bytes, without the ``onnx`` package.

The serving deployable carries onnxruntime and numpy only, so the "no external data" rule
is checked by walking the protobuf wire format along the few message paths that can hold a
tensor (field numbers from ``onnx.proto``). A tensor is external when it has
``external_data`` entries (field 13) or ``data_location = EXTERNAL`` (field 14 = 1).
"""

from __future__ import annotations

from collections.abc import Iterator

# message name -> {field number: message type of that (length-delimited) field}
_CHILDREN: dict[str, dict[int, str]] = {
    "Model": {7: "Graph", 20: "TrainingInfo", 25: "Function"},
    "TrainingInfo": {1: "Graph", 2: "Graph"},
    "Function": {7: "Node", 11: "Attribute"},
    "Graph": {1: "Node", 5: "Tensor", 15: "SparseTensor"},
    "Node": {5: "Attribute"},
    "Attribute": {
        5: "Tensor",
        6: "Graph",
        10: "Tensor",
        11: "Graph",
        22: "SparseTensor",
        23: "SparseTensor",
    },
    "SparseTensor": {1: "Tensor", 2: "Tensor"},
    "Tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_EXTERNAL = 1
#: Deeper nesting than any real model (subgraphs of subgraphs) means a hostile file.
_MAX_DEPTH = 64


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or oversized varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise WireError("length-delimited field runs past the end")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise WireError("fixed-width field runs past the end")
        else:
            raise WireError(f"unsupported wire type {wire}")


def _has_external(buf: memoryview, message: str, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        raise WireError("messages nested too deeply")
    children = _CHILDREN[message]
    for number, wire, value in _fields(buf):
        if message == "Tensor":
            if number == _TENSOR_EXTERNAL_DATA and wire == 2:
                return True
            if number == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
                return True
        elif wire == 2 and number in children:
            assert isinstance(value, memoryview)
            if _has_external(value, children[number], depth + 1):
                return True
    return False


def has_external_data(model_bytes: bytes) -> bool:
    """Whether any tensor in the model (graph, subgraphs, functions) is stored externally.

    Raises
    ------
    WireError
        The bytes are not a protobuf message (truncated or not ONNX at all).
    """
    return _has_external(memoryview(model_bytes), "Model", 0)
