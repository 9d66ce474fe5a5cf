"""Avro single-object encoding of sendgate's records, byte for byte as the
processor reads and writes them.

A single-object record is the two bytes ``C3 01``, the 8-byte little-endian
CRC-64-AVRO (Rabin) fingerprint of the writer schema's parsing canonical
form, then the Avro binary datum. sendgate refuses (as a dead letter) a
record whose fingerprint is not one of its schemas'.

The schemas are the repository's own ``schemas/*.avsc`` files, never
copies: an installed package carries them as ``sendgate_client/schemas``
(put there when the wheel is built); a source checkout reads the
repository's ``schemas/`` directory.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _validate

from .errors import DecodeError, SchemaError
from .records import MAX_RECORD_BYTES, Decision, DeliveryEvent, SendIntent

__all__ = [
    "MAGIC",
    "HEADER_LEN",
    "SCHEMA_FILES",
    "RecordSchema",
    "schema_dir",
    "record_schema",
    "crc64_avro",
    "fingerprint",
    "encode_datum",
    "decode_datum",
    "encode",
    "decode_intent",
    "decode_delivery_event",
    "decode_decision",
]

#: The single-object encoding's marker.
MAGIC = b"\xc3\x01"
#: Marker and fingerprint: the datum starts at this offset.
HEADER_LEN = 10

#: The record types of the public contract, by schema name, and their files.
SCHEMA_FILES: Dict[str, str] = {
    "SendIntent": "send_intent.avsc",
    "DeliveryEvent": "delivery_event.avsc",
    "Decision": "decision.avsc",
    "Alert": "alert.avsc",
    "Command": "command.avsc",
    "DeadLetter": "dead_letter.avsc",
    "PolicyDocument": "policy_document.avsc",
}

_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> List[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY if fp & 1 else 0)
        table.append(fp)
    return table


_CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO (Rabin) fingerprint of ``data``, as the Avro specification defines it."""
    fp = _CRC64_EMPTY
    for b in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ b) & 0xFF]
    return fp


def schema_dir() -> Path:
    """The directory the ``.avsc`` files are read from.

    ``sendgate_client/schemas`` inside an installed package; else, in a
    source checkout, the repository's ``schemas/`` directory
    (``clients/python/sendgate_client/../../../schemas``).
    """
    here = Path(__file__).resolve().parent
    candidates = (here / "schemas", here.parent.parent.parent / "schemas")
    for candidate in candidates:
        if all((candidate / f).is_file() for f in SCHEMA_FILES.values()):
            return candidate
    raise SchemaError(
        "sendgate's Avro schemas were not found: looked in "
        + " and ".join(str(c) for c in candidates)
        + " (install the package from the sendgate repository, or run it from a checkout)"
    )


@dataclass(frozen=True)
class RecordSchema:
    """One record type: its schema, canonical form and fingerprint.

    ``fingerprint`` is the 8 bytes the single-object header carries
    (CRC-64-AVRO of ``canonical_form``, little-endian).
    """

    name: str
    path: Path
    parsed: Any
    canonical_form: str
    fingerprint: bytes


@lru_cache(maxsize=None)
def record_schema(name: str) -> RecordSchema:
    """The schema of a record type by its name (``SendIntent``, ``Decision``, ...)."""
    try:
        file = SCHEMA_FILES[name]
    except KeyError:
        raise SchemaError(f"unknown record type {name!r}; known: {', '.join(SCHEMA_FILES)}") from None
    path = schema_dir() / file
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = fastavro.parse_schema(raw, named_schemas={})
        canonical = to_parsing_canonical_form(parsed)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as e:
        raise SchemaError(f"{path}: {e}") from e
    fp = crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
    return RecordSchema(name=name, path=path, parsed=parsed, canonical_form=canonical, fingerprint=fp)


def fingerprint(name: str) -> bytes:
    """The 8 fingerprint bytes of a record type's single-object header."""
    return record_schema(name).fingerprint


def encode_datum(name: str, datum: Mapping[str, Any]) -> bytes:
    """Encodes a record given as a dict (the schema's field names) as single object.

    Raises ValueError when the dict does not fit the schema.
    """
    rs = record_schema(name)
    try:
        _validate(dict(datum), rs.parsed, raise_errors=True)
    except fastavro.validation.ValidationError as e:
        raise ValueError(f"{name} does not fit its schema: {e}") from e
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(rs.fingerprint)
    fastavro.schemaless_writer(out, rs.parsed, dict(datum))
    return out.getvalue()


def decode_datum(name: str, data: bytes) -> Dict[str, Any]:
    """Decodes a single-object record of type ``name`` to a dict.

    Raises :class:`DecodeError` for a missing header, another schema's
    fingerprint, a datum that does not decode, or trailing bytes.
    """
    rs = record_schema(name)
    data = bytes(data)
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        head = data[:2].hex(" ").upper() or "an empty record"
        raise DecodeError(f"not Avro single-object encoded (expected header C3 01, got {head})")
    if data[2:HEADER_LEN] != rs.fingerprint:
        raise DecodeError(
            f"written with an unknown schema (fingerprint {data[2:HEADER_LEN].hex()}); "
            f"expected {name} ({rs.fingerprint.hex()})"
        )
    buf = io.BytesIO(data)
    buf.seek(HEADER_LEN)
    try:
        value = fastavro.schemaless_reader(buf, rs.parsed, None)
    except (EOFError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise DecodeError(f"Avro datum does not decode as {name}: {e!r}") from e
    left = len(data) - buf.tell()
    if left:
        raise DecodeError(f"Avro datum does not decode as {name}: {left} trailing bytes after the datum")
    if not isinstance(value, dict):
        raise DecodeError(f"Avro datum does not decode as {name}: not a record")
    return value


Encodable = Union[SendIntent, DeliveryEvent, Decision]


def encode(record: Encodable) -> bytes:
    """Encodes a SendIntent, DeliveryEvent or Decision as single object.

    Intents and delivery events are validated first (``validate()``), and a
    record over sendgate's 64 KiB input limit is refused: the processor
    would dead-letter either. Raises ValueError.
    """
    if isinstance(record, SendIntent):
        record.validate()
        data = encode_datum("SendIntent", record.to_dict())
    elif isinstance(record, DeliveryEvent):
        record.validate()
        data = encode_datum("DeliveryEvent", record.to_dict())
    elif isinstance(record, Decision):
        return encode_datum("Decision", record.to_dict())
    else:
        raise TypeError(f"cannot encode {type(record).__name__}: use encode_datum for other record types")
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"the record is {len(data)} bytes; sendgate accepts at most {MAX_RECORD_BYTES}")
    return data


def decode_intent(data: bytes) -> SendIntent:
    """Decodes a single-object SendIntent."""
    return SendIntent.from_dict(decode_datum("SendIntent", data))


def decode_delivery_event(data: bytes) -> DeliveryEvent:
    """Decodes a single-object DeliveryEvent."""
    return DeliveryEvent.from_dict(decode_datum("DeliveryEvent", data))


def decode_decision(data: bytes) -> Decision:
    """Decodes a single-object Decision (a value of the decisions topic)."""
    return Decision.from_dict(decode_datum("Decision", data))
