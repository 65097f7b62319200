"""Request tensors: TF Serving's JSON tensor rules and TensorProto limits.

JSON (g3doc/api_rest.md, util/json_tensor.cc): an integer tensor takes JSON integers only (a JSON
float such as 0.5 or 1.0 is refused, as TF Serving refuses it); a float tensor takes integers
and floats; a bool tensor takes true/false; a string tensor takes JSON strings (UTF-8) or
`{"b64": "..."}` for bytes. On the way out, string outputs whose name ends in `_bytes` are sent as
`{"b64": ...}`, as TF Serving does (and, unlike TF Serving, which would write invalid JSON, any
other string output that is not UTF-8 is also sent as `{"b64": ...}`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import queue

import numpy as np
import simdjson
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from .errors import invalid

MAX_JSON_DEPTH = 32  # a tensor of rank > 32 is not a video; deeper JSON is refused early
# JSON values (containers and scalars) that the generic parser may build as Python objects,
# whatever the body size: an empty list costs 64 bytes for 3 bytes of body, so this bound (and
# len(body) // 16 for larger bodies) keeps a body of B bytes under max(32 MB, 4 B) of objects.
MAX_JSON_VALUES = 500_000
# DataTypes a request tensor may have: numbers, bool and string. Resource handles, variants and
# reference types are graph internals that no client can send meaningfully.
SUPPORTED_DTYPES = frozenset(
    getattr(types_pb2, n) for n in (
        "DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16", "DT_INT8", "DT_INT16", "DT_INT32",
        "DT_INT64", "DT_UINT8", "DT_UINT16", "DT_UINT32", "DT_UINT64", "DT_BOOL", "DT_STRING",
        "DT_COMPLEX64", "DT_COMPLEX128"))


def info_dtype(info) -> tf.DType:
    return tf.dtypes.as_dtype(info.dtype)


def info_shape(info) -> list[int] | None:
    """Dims of a TensorInfo (-1 unknown), or None for unknown rank."""
    if info.tensor_shape.unknown_rank:
        return None
    return [int(d.size) for d in info.tensor_shape.dim]


def shape_text(dims) -> str:
    return "(" + ", ".join("?" if d < 0 else str(d) for d in dims) + ")"


def check_names(sent, infos: dict, signature: str):
    """The request's input names against the signature's, before anything is decoded."""
    sent, wanted = set(sent), set(infos)
    if sent != wanted:
        unexpected = sorted(sent - wanted)
        shown = unexpected[:5] + (["..."] if len(unexpected) > 5 else [])
        raise invalid(f"input names do not match signature {signature!r}: "
                      f"missing {sorted(wanted - sent)}, unexpected {shown}; "
                      f"expected exactly {sorted(wanted)}")


def check_shape(name: str, shape, info, signature: str):
    dims = info_shape(info)
    if dims is not None and (len(shape) != len(dims) or any(
            d >= 0 and d != s for d, s in zip(dims, shape))):
        raise invalid(f"input {name!r}: got shape {tuple(shape)}; signature "
                      f"{signature!r} expects {shape_text(dims)}")


def nbytes(array: np.ndarray) -> int:
    """Decoded size of a request array (string elements: their bytes plus a pointer)."""
    if array.dtype == object:
        return sum(len(b) for b in array.reshape(-1).tolist() if isinstance(b, bytes)) \
            + 8 * array.size
    return array.nbytes


def check_total(total: int, max_bytes: int):
    if total > max_bytes:
        raise invalid(f"the request's tensors are {total} bytes decoded; the limit is "
                      f"{max_bytes} bytes for all inputs together (--max_body_bytes)")


def check_inputs(arrays: dict, infos: dict, signature: str,
                 max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Names, dtypes, shapes and total size of `arrays` against a signature's inputs."""
    check_names(arrays, infos, signature)
    out = {}
    for name, info in infos.items():
        array, dtype = arrays[name], info_dtype(info)
        want_np = object if dtype == tf.string else dtype.as_numpy_dtype
        if dtype == tf.string:
            if array.dtype != object:
                raise invalid(f"input {name!r}: got {array.dtype.name} values; expected string")
        elif array.dtype != want_np:
            raise invalid(f"input {name!r}: Expects arg to be {dtype.name} but "
                          f"{tf.as_dtype(array.dtype).name} is provided")
        check_shape(name, array.shape, info, signature)
        out[name] = array
    if max_bytes is not None:
        check_total(sum(nbytes(a) for a in out.values()), max_bytes)
    return out


# --- gRPC: TensorProto ----------------------------------------------------------------------

def _values_count(proto: tensor_pb2.TensorProto) -> int:
    # Every `*_val` field of a TensorProto is a repeated field of values.
    return sum(len(v) for f, v in proto.ListFields() if f.name.endswith("_val"))


def protos_to_inputs(protos, infos: dict, signature: str, max_bytes: int) -> dict[str, np.ndarray]:
    """A PredictRequest's TensorProtos as arrays, validated before anything is decoded.

    Names, dtypes, shapes (against the signature) and the decoded size of all inputs together
    are read from the protos' headers first, so a small request that declares huge tensors, or
    tensors the signature does not have, is refused without allocating them.
    """
    check_names(protos.keys(), infos, signature)
    total, checked = 0, []
    for name, info in infos.items():
        proto = protos[name]
        if proto.dtype not in SUPPORTED_DTYPES:
            label = (types_pb2.DataType.Name(proto.dtype)
                     if proto.dtype in types_pb2.DataType.values() else str(proto.dtype))
            raise invalid(f"input {name!r}: dtype {label} is not supported; a request tensor is "
                          "a number, bool or string type")
        if proto.dtype != info.dtype:
            raise invalid(f"input {name!r}: Expects arg to be {info_dtype(info).name} but "
                          f"{tf.dtypes.as_dtype(proto.dtype).name} is provided")
        if proto.tensor_shape.unknown_rank:
            raise invalid(f"input {name!r}: the TensorProto has an unknown rank; expected dims")
        dims = [int(d.size) for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise invalid(f"input {name!r}: dims {dims} include a negative size")
        check_shape(name, dims, info, signature)
        count = 1
        for d in dims:
            count *= d
        values = _values_count(proto)
        if proto.dtype == types_pb2.DT_STRING:
            if values != count:
                raise invalid(f"input {name!r}: {values} strings for shape {dims} ({count} "
                              "elements)")
            total += sum(len(b) for b in proto.string_val) + 8 * count
        else:
            itemsize = tf.dtypes.as_dtype(proto.dtype).size
            if proto.tensor_content and len(proto.tensor_content) != count * itemsize:
                raise invalid(f"input {name!r}: tensor_content has {len(proto.tensor_content)} "
                              f"bytes; shape {dims} of {info_dtype(info).name} needs "
                              f"{count * itemsize}")
            if not proto.tensor_content and values > count:
                raise invalid(f"input {name!r}: {values} values for shape {dims} ({count} "
                              "elements)")
            total += count * itemsize
        check_total(total, max_bytes)
        checked.append(name)
    out = {}
    for name in checked:
        try:
            out[name] = tf.make_ndarray(protos[name])
        except (ValueError, TypeError) as e:
            raise invalid(f"input {name!r}: malformed TensorProto ({e})") from None
    return out


# --- REST: JSON -----------------------------------------------------------------------------

# Large arrays of numbers (a 16-frame clip is millions of them) are found in the body and their
# shape checked with bytes.translate/find (C speed, linear, no regex: a regex is quadratic on
# adversarial input); their numbers are parsed by simdjson (pysimdjson) once the input's dtype
# is known, a piece at a time, straight into the tensor: no Python object per number, and the
# parser's own memory is bounded by the piece. Everything else is parsed by Python's json.
_NUMBER_CHARS = b"0123456789eE+-."
_WHITESPACE = b" \t\r\n"
_RUN_MASK = bytes(49 if chr(i) in "[]0123456789eE+-., \t\r\n" else 48 for i in range(256))
_MIN_RUN = 4096
# Numbers -> "0", brackets and commas kept (whitespace is deleted with it).
_CANON = bytes.maketrans(_NUMBER_CHARS, b"0" * len(_NUMBER_CHARS))
# A piece's brackets become spaces, so "[1, 2], [3, 4]" parses as the list "1, 2, 3, 4".
_BRACKETS_TO_SPACE = bytes.maketrans(b"[]", b"  ")
PIECE_BYTES = 1 << 18  # body bytes simdjson parses at once (its tape is ~16 bytes a number)
# Parsers are reused: a new one's first parse of a large piece was up to 10x slower (its
# buffers are allocated then). Each holds about 12 x PIECE_BYTES at most; a few are kept.
_PARSERS: "queue.SimpleQueue[simdjson.Parser]" = queue.SimpleQueue()
_KEPT_PARSERS = 4


class NumericArray:
    """A rectangular JSON array of numbers in the request body, not yet parsed.

    `shape` and `is_float` (a '.' or exponent somewhere) are known from the body's bytes;
    `to_array(dtype)` parses the numbers into an array of that dtype.
    """

    __slots__ = ("body", "start", "end", "shape", "is_float")

    def __init__(self, body, start: int, end: int, shape: tuple, is_float: bool):
        self.body, self.start, self.end = body, start, end
        self.shape, self.is_float = shape, is_float

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def first_float(self) -> str:
        """The first number written as a float (e.g. "0.5", "1e3"), as the body has it."""
        body, start, end = self.body, self.start, self.end
        i = min(j for j in (body.find(c, start, end) for c in (b".", b"e", b"E")) if j >= 0)
        lo, hi = i, i + 1
        while lo > max(start, i - 40) and body[lo - 1] in _NUMBER_CHARS:
            lo -= 1
        while hi < min(end, i + 40) and body[hi] in _NUMBER_CHARS:
            hi += 1
        return bytes(body[lo:hi]).decode("ascii")

    def to_array(self, dtype, where: str) -> np.ndarray:
        """The numbers as `dtype`; integers are range-checked, floats cast as numpy casts."""
        dtype = np.dtype(dtype)
        out = np.empty(self.size, dtype)
        integer = dtype.kind in "iu"
        info = np.iinfo(dtype) if integer else None
        body, k, p, span = self.body, 0, self.start, None
        while p < self.end:
            q = body.find(b",", p + PIECE_BYTES, self.end) if self.end - p > PIECE_BYTES else -1
            q = self.end if q < 0 else q
            values = _parse_numbers(b"[" + body[p:q].translate(_BRACKETS_TO_SPACE) + b"]",
                                    integer, p - 1)
            if k + len(values) > out.size:
                raise invalid(f"{where}: more numbers than its shape {self.shape} holds")
            if integer and values.size:
                lo, hi = values.min(), values.max()
                if span is not None or lo < info.min or hi > info.max:
                    # Out of range: the rest is only read for the reply's span.
                    span = (lo, hi) if span is None else (min(span[0], lo), max(span[1], hi))
            if span is None:
                out[k:k + len(values)] = values
            k, p = k + len(values), q + 1
        if span is not None:
            raise invalid(f"{where}: values span [{span[0]}, {span[1]}]; {dtype.name} holds "
                          f"[{info.min}, {info.max}]")
        if k != out.size:
            raise invalid(f"{where}: {k} numbers for shape {self.shape}")
        return out.reshape(self.shape)


def _parse_numbers(text: bytes, integer: bool, offset: int) -> np.ndarray:
    """A JSON list of numbers as int64 (integer) or float64 values; offset: text's place in
    the body, for errors."""
    doc = None
    try:
        parser = _PARSERS.get_nowait()
    except queue.Empty:
        parser = simdjson.Parser()
    try:
        doc = parser.parse(text)
        return np.frombuffer(doc.as_buffer(of_type="i" if integer else "d"),
                             np.int64 if integer else np.float64)
    except (ValueError, TypeError, RuntimeError):
        # simdjson names no position, and refuses numbers that JSON allows (integers beyond
        # 64 bits, 1e400): Python's json decides, and says where.
        pass
    finally:
        doc = None  # its proxies pin the parser
        # A piece with no comma for long (one huge "number") grew the parser: not kept.
        if len(text) <= 2 * PIECE_BYTES and _PARSERS.qsize() < _KEPT_PARSERS:
            _PARSERS.put(parser)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        at = offset + e.pos
        raise invalid(f"the request body is not valid JSON ({e.msg}: line {e.lineno} near "
                      f"byte {at}, {text[max(0, e.pos - 10):e.pos + 10].decode('latin-1')!r})"
                      ) from None
    # Integers beyond 64 bits stay Python ints (an object array): the range check names them.
    return np.array(values) if integer else np.array(values, dtype=np.float64)


def _numeric(body, start: int, end: int) -> NumericArray | None:
    """body[start:end] as a rectangular JSON array of numbers, or None (then the generic
    parser handles it). Memory: about the run's size, in pieces."""
    # The shape comes from the skeleton (brackets and commas); on the way, a number against
    # the outer side of a bracket ("]7", "7[") is refused: stripping the brackets would hide
    # it. A piece at a time, so the copies stay small.
    skeleton, last = [], b""
    for p in range(start, end, PIECE_BYTES):
        canon = bytes(body[p:min(p + PIECE_BYTES, end)].translate(_CANON, _WHITESPACE))
        # ... and an empty list ("[]") is the generic parser's (and its value bound's).
        c = np.frombuffer(last + canon, np.uint8)  # (a 2-byte bytes.find is slow here)
        left, right = c[:-1], c[1:]
        if any(((left == ord(a)) & (right == ord(b))).any() for a, b in ("]0", "0[", "[]")):
            return None
        skeleton.append(canon.translate(None, b"0"))
        last = canon[-1:] or last
    skeleton = b"".join(skeleton)
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if not 1 <= rank <= MAX_JSON_DEPTH:
        return None
    dims, child = [], b""
    for level in range(rank - 1, -1, -1):  # innermost list first: count its children
        p, d = level + 1, 0
        while True:
            if skeleton[p:p + len(child)] != child:
                return None
            p, d = p + len(child), d + 1
            if p >= len(skeleton) or skeleton[p] not in b",]":
                return None
            if skeleton[p] == ord("]"):
                break
            p += 1
        dims.insert(0, d)
        child = b"[" + b",".join([child] * d) + b"]"
    if child != skeleton:
        return None
    is_float = any(body.find(c, start, end) >= 0 for c in (b".", b"e", b"E"))
    return NumericArray(body, start, end, tuple(dims), is_float)


def loads(body: bytes):
    """json.loads, with large arrays of numbers left as NumericArray leaves (parsed later)."""
    if len(body) > 65536:
        nonce = os.urandom(8).hex()
        subs, parts, last, pos = {}, [], 0, 0
        mask, runs = body.translate(_RUN_MASK), []
        while (i := mask.find(b"1" * _MIN_RUN, pos)) >= 0:
            j = mask.find(b"0", i)
            j = len(body) if j < 0 else j
            pos = j
            runs.append((i, j))
        del mask
        for i, j in runs:
            start, end = body.find(b"[", i, j), body.rfind(b"]", i, j) + 1
            if start < 0 or end <= start:
                continue
            parsed = _numeric(body, start, end)
            if parsed is None:
                continue
            key = f"__tfzoo_{nonce}_{len(subs)}"
            subs[key] = parsed
            parts += [body[last:start], f'"{key}"'.encode()]
            last = end
        if subs:
            parts.append(body[last:])
            used = []

            def put(v):
                if isinstance(v, str) and v in subs:
                    used.append(v)
                    return subs[v]
                if isinstance(v, list):
                    return [put(x) for x in v]
                if isinstance(v, dict):
                    return {k: put(x) for k, x in v.items()}
                return v

            rest = b"".join(parts)
            _check_values(rest)
            try:
                tree = put(json.loads(rest))
                if sorted(used) == sorted(subs):
                    return tree
            except (ValueError, RecursionError):
                pass  # e.g. a run inside a JSON string: parse the body as it is
    _check_values(body)
    return json.loads(body)


def _check_values(text: bytes):
    """Refuses JSON with more values than the generic parser may build as Python objects."""
    limit = max(MAX_JSON_VALUES, len(text) // 16)
    # Every value but the last is followed by a comma or closes a container; brackets inside
    # strings count too, so this is an upper bound, computed at memchr speed.
    values = text.count(b",") + text.count(b"[") + text.count(b"{")
    if values > limit:
        raise invalid(f"the request body has about {values} JSON values outside large numeric "
                      f"arrays; the limit is {limit} (send the tensor as one nested array of "
                      "numbers, or encoded frames)")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def json_to_array(value, dtype: tf.DType, where: str) -> np.ndarray:
    if dtype == tf.string:
        return _strings(value, where)
    if isinstance(value, NumericArray):
        if dtype == tf.bool:
            raise invalid(f"{where}: got numbers; input of type bool takes JSON true/false")
        if value.is_float and dtype.is_integer:
            raise invalid(f"{where}: JSON Value: {value.first_float()} is a float; a "
                          f"{dtype.name} input takes JSON integers only (TF Serving refuses "
                          "floats such as 1.0 for integer tensors)")
        return value.to_array(dtype.as_numpy_dtype, where)
    if isinstance(value, dict):
        raise invalid(f"{where}: got a JSON object (keys {sorted(value)[:5]}); expected "
                      f"a nested list of {dtype.name} values")
    try:
        array = np.asarray(value)
    except (ValueError, RecursionError):
        raise invalid(f"{where}: the nested lists are ragged or nested too deeply; expected a "
                      "rectangular array") from None
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(dtype.as_numpy_dtype)
    if dtype == tf.bool:
        if kind != "b":
            raise invalid(f"{where}: got {array.dtype.name} values; input of type bool takes "
                          "JSON true/false")
        return array
    if kind == "b" or kind in "USO":
        what = {"b": "true/false", "U": "strings", "S": "strings"}.get(kind, "non-numbers")
        raise invalid(f"{where}: got {what}; expected {dtype.name} numbers")
    if dtype.is_integer:
        if kind == "f":
            bad = array.reshape(-1)[0].item()
            raise invalid(f"{where}: JSON Value: {bad!r} is a float; a {dtype.name} input takes "
                          "JSON integers only (TF Serving refuses floats such as 1.0 for integer "
                          "tensors)")
    return _check_range(array, dtype, where)


def _check_range(array: np.ndarray, dtype: tf.DType, where: str) -> np.ndarray:
    if dtype == tf.bool:
        raise invalid(f"{where}: got numbers; input of type bool takes JSON true/false")
    if dtype.is_integer and array.size:
        info = np.iinfo(dtype.as_numpy_dtype)
        lo, hi = array.min(), array.max()
        if lo < info.min or hi > info.max:
            raise invalid(f"{where}: values span [{lo}, {hi}]; {dtype.name} holds "
                          f"[{info.min}, {info.max}]")
    return array.astype(dtype.as_numpy_dtype)


def _strings(value, where: str) -> np.ndarray:
    flat: list[bytes] = []

    def walk(v, depth):
        if depth > MAX_JSON_DEPTH:
            raise invalid(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(v, list):
            shapes = [walk(x, depth + 1) for x in v]
            if any(s != shapes[0] for s in shapes):
                raise invalid(f"{where}: the nested lists are ragged; expected a rectangular "
                              "array of strings")
            return (len(v),) + (shapes[0] if shapes else ())
        if isinstance(v, str):
            flat.append(v.encode("utf-8", "surrogatepass"))
            return ()
        if _is_b64(v) and isinstance(v["b64"], str):
            try:
                flat.append(base64.b64decode(v["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise invalid(f"{where}: the \"b64\" value is not valid base64") from None
            return ()
        if isinstance(v, NumericArray):
            raise invalid(f"{where}: got numbers; a string input takes JSON strings or "
                          '{"b64": "..."} objects')
        raise invalid(f"{where}: got {type(v).__name__} {str(v)[:40]!r}; a string input takes "
                      'JSON strings or {"b64": "..."} objects')

    shape = walk(value, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _named(value, infos: dict, where: str) -> dict:
    """{input name: value}; a single-input signature also takes the bare value."""
    if isinstance(value, dict) and not _is_b64(value):
        return value
    if len(infos) != 1:
        raise invalid(f"{where} is not a JSON object; this signature has inputs "
                      f"{sorted(infos)}, so expected an object with those keys")
    return {next(iter(infos)): value}


def _itemsize(dtype: tf.DType) -> int:
    return 8 if dtype == tf.string else dtype.size


def json_to_inputs(request, infos: dict, signature: str, max_bytes: int,
                   reserve=None) -> tuple[dict, str]:
    """A parsed predict body -> ({input: array}, "row" | "columnar").

    Names are checked before any value is converted; rows are converted one at a time into
    arrays allocated once from the first row's shape, and the first row of another shape (or
    a total above `max_bytes`) ends the parse. `reserve(n)`, if given, is called with the
    decoded size of the request's tensors once it is known and before the large ones are built
    (large arrays of numbers and rows after the first); it raises to refuse the request.
    """
    if not isinstance(request, dict):
        raise invalid(f"the request body is a JSON {type(request).__name__}; expected an object "
                      '{"signature_name": ..., "instances": [...]} or {"inputs": ...}')
    unknown = set(request) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise invalid(f"unknown request keys {sorted(unknown)[:5]}; expected 'signature_name' "
                      "and one of 'instances' or 'inputs'")
    if ("instances" in request) == ("inputs" in request):
        raise invalid("the request must have exactly one of 'instances' (row format) or "
                      "'inputs' (columnar format)")
    reserve = reserve or (lambda n: None)
    if "inputs" in request:
        named = _named(request["inputs"], infos, "'inputs'")
        check_names(named, infos, signature)
        # Small values first (Python lists, already bounded by the parser); large arrays of
        # numbers are counted from their shape and built once the total is allowed.
        arrays, total = {}, 0
        for k, info in infos.items():
            if isinstance(named[k], NumericArray):
                total += named[k].size * _itemsize(info_dtype(info))
            else:
                arrays[k] = json_to_array(named[k], info_dtype(info), f"input {k!r}")
                total += nbytes(arrays[k])
            check_total(total, max_bytes)
        reserve(total)
        for k, info in infos.items():
            if k not in arrays:
                arrays[k] = json_to_array(named[k], info_dtype(info), f"input {k!r}")
        return check_inputs(arrays, infos, signature), "columnar"
    instances = request["instances"]
    if isinstance(instances, NumericArray) and len(infos) == 1 and len(instances.shape):
        # One array of numbers: the batch of a single-input signature, parsed in one go.
        name, info = next(iter(infos.items()))
        total = instances.size * _itemsize(info_dtype(info))
        check_total(total, max_bytes)
        reserve(total)
        array = json_to_array(instances, info_dtype(info), f"input {name!r}")
        return check_inputs({name: array}, infos, signature, max_bytes), "row"
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty JSON list (one entry per example)")
    first = _named(instances[0], infos, "instances[0]")
    check_names(first, infos, signature)
    n, arrays, shapes = len(instances), {}, {}
    for name, info in infos.items():
        a = json_to_array(first[name], info_dtype(info), f"instances[0] input {name!r}")
        check_shape(name, (n,) + a.shape, info, signature)
        shapes[name] = a.shape
        arrays[name] = np.empty((n,) + a.shape, dtype=a.dtype)
        arrays[name][0] = a
    total = sum(nbytes(a[:1]) for a in arrays.values()) * n
    check_total(total, max_bytes)
    reserve(total)
    for i in range(1, n):
        row = _named(instances[i], infos, f"instances[{i}]")
        if set(row) != set(infos):
            raise invalid(f"instances[{i}] has keys {sorted(row)[:5]}; instances[0] has "
                          f"{sorted(infos)}: every instance needs the same inputs")
        for name, info in infos.items():
            a = json_to_array(row[name], info_dtype(info), f"instances[{i}] input {name!r}")
            if a.shape != shapes[name]:
                raise invalid(f"input {name!r}: instances have different shapes: instances[{i}] "
                              f"is {a.shape}, instances[0] is {shapes[name]}; in the row format "
                              "every instance must have the same shape (send clips of different "
                              "sizes in separate requests)")
            arrays[name][i] = a
    if any(a.dtype == object for a in arrays.values()):
        check_total(sum(nbytes(a) for a in arrays.values()), max_bytes)
    return check_inputs(arrays, infos, signature), "row"


def _json_value(name: str, array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        flat = [_string(name, b) for b in array.reshape(-1).tolist()]
        if array.ndim == 0:
            return flat[0]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape).tolist()
    return array.tolist()


def _string(name: str, b):
    if not isinstance(b, bytes):
        return b
    if not name.endswith("_bytes"):
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(b).decode("ascii")}


def outputs_to_json(outputs: dict, fmt: str) -> dict:
    if fmt == "columnar":
        if len(outputs) == 1:
            name, value = next(iter(outputs.items()))
            return {"outputs": _json_value(name, value)}
        return {"outputs": {k: _json_value(k, v) for k, v in outputs.items()}}
    batch = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if len(set(batch.values())) != 1 or None in batch.values():
        raise invalid(f"outputs have batch sizes {batch}; the row format ('instances') needs "
                      "one batch dimension on every output: use 'inputs'")
    n = next(iter(batch.values()))
    columns = {k: _json_value(k, v) for k, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(n)]}
