"""A minimal, independent reader and writer of SentencePiece's ModelProto
wire format, for the tests: they inspect trained models and derive variants
from them (tied scores, unused pieces, user-defined symbols) that the
SentencePiece trainer does not produce. Field numbers come from
sentencepiece_model.proto.

A message is kept as a list of [field, wire_type, value] so that unknown
fields survive a round trip; value is an int (varint, fixed32, fixed64) or
bytes (length-delimited).
"""
import struct

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

# ModelProto.SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def write_varint(x):
    if x < 0:
        x += 1 << 64
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse(buf):
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == VARINT:
            value, pos = read_varint(buf, pos)
        elif wt == FIXED64:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wt == FIXED32:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wt == LEN:
            n, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos:pos + n]), pos + n
        else:
            raise ValueError(f"wire type {wt} at {pos}")
        fields.append([field, wt, value])
    return fields


def serialize(fields):
    out = bytearray()
    for field, wt, value in fields:
        out += write_varint(field << 3 | wt)
        if wt == VARINT:
            out += write_varint(value)
        elif wt == FIXED64:
            out += struct.pack("<Q", value)
        elif wt == FIXED32:
            out += struct.pack("<I", value)
        else:
            out += write_varint(len(value)) + value
    return bytes(out)


def get(fields, number, default=None):
    """The last value of a non-repeated field, as protobuf reads it."""
    for f, _, v in reversed(fields):
        if f == number:
            return v
    return default


def set_field(fields, number, wt, value):
    fields[:] = [f for f in fields if f[0] != number]
    fields.append([number, wt, value])


class Piece:
    def __init__(self, piece, score=0.0, type_=NORMAL):
        self.piece, self.score, self.type = piece, score, type_

    def encode(self):
        fields = [[1, LEN, self.piece.encode("utf-8")],
                  [2, FIXED32, struct.unpack("<I", struct.pack("<f", self.score))[0]]]
        if self.type != NORMAL:
            fields.append([3, VARINT, self.type])
        return serialize(fields)


class Model:
    """pieces: list of Piece; other: the remaining top-level fields."""

    def __init__(self, data):
        self.pieces, self.other = [], []
        for f in parse(data):
            if f[0] == 1:
                sub = parse(f[2])
                score = get(sub, 2, 0)
                self.pieces.append(Piece(get(sub, 1, b"").decode("utf-8"),
                                         struct.unpack("<f", struct.pack("<I", score))[0],
                                         get(sub, 3, NORMAL)))
            else:
                self.other.append(f)

    @classmethod
    def load(cls, path):
        with open(path, "rb") as fh:
            return cls(fh.read())

    def spec(self, number):
        """trainer_spec (2) or normalizer_spec (3) as a field list."""
        return parse(get(self.other, number, b""))

    def set_spec(self, number, fields):
        set_field(self.other, number, LEN, serialize(fields))

    def serialize(self):
        return serialize([[1, LEN, p.encode()] for p in self.pieces] + self.other)

    def save(self, path):
        with open(path, "wb") as fh:
            fh.write(self.serialize())
