"""What ties ``policy.onnx`` to its contract, checked with the standard library alone (no ``onnx``).

**Graph hash.** The contract's ``sha256.onnx_graph`` is the sha256 of the bytes of the
``ModelProto.graph`` field (field 7: nodes, weights, inputs, outputs) exactly as they are stored
in ``policy.onnx``. The contract itself sits in ``ModelProto.metadata_props`` (field 14), outside
those bytes, so a file can carry the hash of its own graph. The exporter serialises the model
without the contract, hashes that graph field, and appends the contract as one more
``metadata_props`` entry (appending a field to a protobuf message is a valid encoding of the
message with that field added), so the bytes hashed at export are the bytes in the file. A file
must hold exactly one graph field (protobuf would merge two, adding nodes and weights unseen).

**Wire format.** Only the top-level fields of the model (and the two strings of each metadata
entry) are read: a varint tag ``field_number << 3 | wire_type``, then a varint (type 0), 8 bytes
(type 1), a varint length and that many bytes (type 2) or 4 bytes (type 5). Larger fields are
skipped by their length, so checking a multi-megabyte model costs one sha256 pass.

**Contract file.** When ``policy.json`` (the ONNX file's name with ``.json``) sits next to the model,
it must parse to the embedded contract; a difference is named by its first dotted key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolearn.deploy.contract import ContractError

GRAPH_FIELD = 7
METADATA_FIELD = 14
ENTRY_KEY_FIELD, ENTRY_VALUE_FIELD = 1, 2
LENGTH_DELIMITED = 2
_FIXED_WIDTH = {1: 8, 5: 4}
_MAX_SHOWN = 60


@dataclass(frozen=True)
class Field:
    """One protobuf field: its number, wire type and the byte span ``[start, end)`` of its value."""

    number: int
    wire_type: int
    start: int
    end: int


def fields(data: bytes, source: str, start: int = 0, end: int | None = None) -> list[Field]:
    """The fields of the protobuf message encoded in ``data[start:end]`` (not descending into them)."""
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end, source)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, value_end = _varint(data, pos, end, source)
            value_start = pos
        elif wire_type == LENGTH_DELIMITED:
            length, value_start = _varint(data, pos, end, source)
            value_end = value_start + length
        elif wire_type in _FIXED_WIDTH:
            value_start, value_end = pos, pos + _FIXED_WIDTH[wire_type]
        else:
            raise ContractError(f"{source}: not an ONNX model file (protobuf wire type {wire_type} at byte {pos})")
        if number == 0 or value_end > end:
            raise ContractError(f"{source}: not an ONNX model file (malformed protobuf field at byte {pos})")
        found.append(Field(number, wire_type, value_start, value_end))
        pos = value_end
    return found


def graph_sha256(data: bytes, source: str) -> str:
    """sha256 (hex) of the stored bytes of the model's one graph field (see the module doc)."""
    graphs = [f for f in fields(data, source) if f.number == GRAPH_FIELD]
    if len(graphs) != 1 or graphs[0].wire_type != LENGTH_DELIMITED:
        raise ContractError(f"{source}: expected one ONNX graph in the file, found {len(graphs)} graph fields")
    return hashlib.sha256(memoryview(data)[graphs[0].start:graphs[0].end]).hexdigest()


def metadata(data: bytes, source: str) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict; a key that occurs twice is an error."""
    props: dict[str, str] = {}
    for entry in fields(data, source):
        if entry.number != METADATA_FIELD or entry.wire_type != LENGTH_DELIMITED:
            continue
        strings = {ENTRY_KEY_FIELD: "", ENTRY_VALUE_FIELD: ""}
        for item in fields(data, source, entry.start, entry.end):
            if item.number in strings and item.wire_type == LENGTH_DELIMITED:
                strings[item.number] = _text(data, item, source)
        key = strings[ENTRY_KEY_FIELD]
        if key in props:
            raise ContractError(f"{source}: the ONNX metadata holds key {key!r} twice")
        props[key] = strings[ENTRY_VALUE_FIELD]
    return props


def append_metadata(data: bytes, key: str, value: str) -> bytes:
    """``data`` (a serialised ModelProto) with one more ``metadata_props`` entry ``key: value``;
    every byte of ``data``, the graph's included, is kept as it was."""
    entry = _encode_field(ENTRY_KEY_FIELD, key.encode()) + _encode_field(ENTRY_VALUE_FIELD, value.encode())
    return data + _encode_field(METADATA_FIELD, entry)


def check_graph_hash(data: bytes, contract: dict[str, Any], source: str) -> None:
    """The graph stored in ``data`` must hash to the contract's ``sha256.onnx_graph``."""
    recorded = contract["sha256"].get("onnx_graph")
    actual = graph_sha256(data, source)
    if recorded != actual:
        raise ContractError(f"{source}: contract key 'sha256.onnx_graph' is {recorded}, the graph in the file "
                            f"hashes to {actual}: the model was changed after export (re-export it)")


def check_contract_file(contract: dict[str, Any], model_path: Path) -> None:
    """If ``<model>.json`` (``policy.json``) exists beside the model, it must equal ``contract``."""
    path = model_path.with_suffix(".json")
    if not path.is_file():
        return
    try:
        written = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ContractError(f"{path}: unreadable contract file beside {model_path.name} ({err}); "
                            "re-export, or remove it") from None
    where = first_difference(written, contract)
    if where is not None:
        raise ContractError(f"{path}: contract key {dotted(where)!r} differs from the contract embedded in "
                            f"{model_path.name} ({_shown(written, where)} vs {_shown(contract, where)}); "
                            "re-export, or remove the file")


def first_difference(a: Any, b: Any) -> tuple[str | int, ...] | None:
    """The path (keys and list indices) to the first place where two JSON values differ, or None;
    ``()`` when they differ at the top."""
    if isinstance(a, dict) and isinstance(b, dict):
        for name in [*a, *(k for k in b if k not in a)]:
            if name not in a or name not in b:
                return (name,)
            found = first_difference(a[name], b[name])
            if found is not None:
                return (name, *found)
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return ()
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y)
            if found is not None:
                return (i, *found)
        return None
    same = a == b and isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str)
    return None if same else ()


def dotted(path: tuple[str | int, ...]) -> str:
    """A path of :func:`first_difference` as the contract's key notation: ``action.scale[1]``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text or "(the whole contract)"


def _varint(data: bytes, pos: int, end: int, source: str) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ContractError(f"{source}: not an ONNX model file (malformed protobuf varint at byte {pos})")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _text(data: bytes, item: Field, source: str) -> str:
    try:
        return bytes(data[item.start:item.end]).decode()
    except UnicodeDecodeError:
        raise ContractError(f"{source}: ONNX metadata string at byte {item.start} is not UTF-8") from None


def _shown(value: Any, path: tuple[str | int, ...]) -> str:
    """The JSON text of the value at ``path`` (shortened), or ``<missing>``."""
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    text = json.dumps(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."
