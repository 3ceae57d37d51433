"""Schemaless Avro messages straight to Arrow columns: a compiled walk over the bytes, no Python
object per field.

fastavro builds a dictionary per record and a Python object per field (~1 ms for a full ZTF alert
packet of ~700 fields). For a batch of messages written with one schema, :func:`compile_schema`
turns the writer schema into a flat program (records inlined; unions, arrays and maps as jumps and
loops) and :func:`decode_columns` runs it over all the messages in one compiled kernel, keeping only
the scalar fields of the top-level record, of its sub-records (``candidate``) and of its arrays of
records (``prv_candidates``, ``fp_hists``), and skips everything else (cutouts, maps, nested arrays)
without reading it. The result is the nested Arrow table that
:func:`earlyia.io.ztf.lightcurves_from_alert_table` (ZTF) and
:func:`earlyia.io.rubin.lightcurves_from_columns` (Rubin) read. A kept sub-record or array item that
a union leaves out is a null struct, as fastavro's None. A message the program cannot walk exactly
(truncated, trailing bytes, a bad union index) is reported by index, for the caller to decode the
slow way. :func:`decode_block` walks the records of an Avro container's blocks, written one after
the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
from numba import types
from numba.extending import intrinsic

# opcodes
(
    _NULL,
    _BOOL,
    _LONG,
    _FLOAT,
    _DOUBLE,
    _BYTES,
    _FIXED,
    _UNION,
    _JUMP,
    _ARRAY,
    _LOOP,
    _END,
    _OPTIONAL,
    _MARK,
) = range(14)
_PRIM = {
    "null": _NULL,
    "boolean": _BOOL,
    "int": _LONG,
    "long": _LONG,
    "float": _FLOAT,
    "double": _DOUBLE,
    "bytes": _BYTES,
    "string": _BYTES,
    "enum": _LONG,
}
#: Types a union with null reads in one instruction.
_SCALARS = ("boolean", "int", "long", "float", "double", "bytes", "string")
_ARROW = {_BOOL: pa.bool_(), _LONG: pa.int64(), _FLOAT: pa.float32(), _DOUBLE: pa.float64()}


@dataclass
class Column:
    path: tuple[str, ...]  # ("objectId",), ("candidate", "jd"), ("prv_candidates", "magpsf")
    kind: int  # opcode of the value
    slot: int  # -1: one value per message; else the array slot whose elements it belongs to
    string: bool = False
    enum_symbols: tuple[str, ...] | None = None
    marker: bool = (
        False  # the presence of the sub-record ``path[0]`` (a union with null can leave it out)
    )


@dataclass
class Program:
    op: np.ndarray
    arg: np.ndarray
    arg2: np.ndarray
    out: np.ndarray
    table: np.ndarray
    columns: list[Column]
    slots: list[str]  # array slot -> top-level field name
    record_fields: dict[str, list[str]]  # top-level sub-records kept (name -> field order)
    per_message: int = 64  # room for array elements per message (grows when a batch needs more)
    text_per_message: int = (
        1024  # room for the kept strings' bytes per message (grows when a batch needs more)
    )


class _Builder:
    def __init__(self, wanted=None):
        self.wanted = wanted
        self.op: list[int] = []
        self.arg: list[int] = []
        self.arg2: list[int] = []
        self.out: list[int] = []
        self.table: list[int] = []
        self.columns: list[Column] = []
        self.slots: list[str] = []
        self.record_fields: dict[str, list[str]] = {}
        self.named: dict[str, object] = {}

    def emit(self, op: int, arg: int = 0, arg2: int = 0, out: int = -1) -> int:
        self.op.append(op)
        self.arg.append(arg)
        self.arg2.append(arg2)
        self.out.append(out)
        return len(self.op) - 1

    def resolve(self, schema):
        if isinstance(schema, str):
            return self.named.get(schema, schema)
        if (
            isinstance(schema, dict)
            and schema.get("type") in ("record", "enum", "fixed")
            and "name" in schema
        ):
            self.named[schema["name"]] = schema
            if "namespace" in schema:
                self.named[f"{schema['namespace']}.{schema['name']}"] = schema
        return schema

    def value(self, schema, path: tuple[str, ...] | None, slot: int, depth: int) -> None:
        """Emit the walk of ``schema``; ``path`` names the column when the value is kept (None:
        skipped)."""
        schema = self.resolve(schema)
        if isinstance(schema, list) and len(schema) == 2 and "null" in schema:
            other = self.resolve(schema[1 - schema.index("null")])
            if isinstance(other, dict) and other.get("type") in _SCALARS:
                other = other[
                    "type"
                ]  # {"type": "long", "logicalType": ...}: read as its type, as below
            if isinstance(other, str) and other in _SCALARS:
                # ["null", "double"] and the like, the fields of most alert schemas: one
                # instruction, not three
                self._leaf(
                    _PRIM[other],
                    path,
                    slot,
                    depth,
                    string=other == "string",
                    null_branch=schema.index("null"),
                )
                return
        if isinstance(schema, list):  # union: an index, then the branch
            at = self.emit(_UNION, 0, len(schema))
            jumps = []
            first = len(self.table)
            self.table.extend([0] * len(schema))
            for k, branch in enumerate(schema):
                self.table[first + k] = len(self.op)
                self.value(branch, path, slot, depth)
                jumps.append(self.emit(_JUMP))
            self.arg[at] = first
            for j in jumps:
                self.arg[j] = len(self.op)
            return
        if isinstance(schema, dict):
            t = schema.get("type")
            if t == "record":
                if (
                    depth == 1 and path is not None
                ):  # a kept sub-record or array item: mark that it is there (not null)
                    self.columns.append(Column(path, _MARK, slot, marker=True))
                    self.emit(_MARK, 0, 0, len(self.columns) - 1)
                for f in schema["fields"]:
                    sub = None
                    if depth == 0:
                        sub = (f["name"],)
                        if (
                            self.wanted is not None
                            and _is_container(self.resolve(f["type"]), self)
                            and f["name"] not in self.wanted
                        ):
                            sub = None  # a sub-record or array nobody reads: walked, not kept
                    elif depth == 1 and path is not None:
                        fields = None if self.wanted is None else self.wanted.get(path[0])
                        sub = (*path, f["name"]) if fields is None or f["name"] in fields else None
                    inner = self.resolve(f["type"])
                    if depth == 0 and _is_record(inner, self):
                        self.record_fields.setdefault(f["name"], [])
                    if depth == 1 and path is not None:
                        self.record_fields.setdefault(path[0], []).append(f["name"])
                    self.value(f["type"], sub, slot, depth + 1)
                return
            if t == "array":
                keep = (
                    depth == 1
                    and path is not None
                    and _is_record(self.resolve(schema["items"]), self)
                )
                s = -1
                if keep:
                    s = len(self.slots)
                    self.slots.append(path[0])
                at = self.emit(_ARRAY, 0, s)
                self.value(
                    schema["items"],
                    path if keep else None,
                    s if keep else slot,
                    1 if keep else depth + 1,
                )
                self.emit(_LOOP, at)
                self.arg[at] = len(self.op)
                return
            if t == "map":
                at = self.emit(_ARRAY, 0, -1)
                self.emit(_BYTES)
                self.value(schema["values"], None, slot, depth + 1)
                self.emit(_LOOP, at)
                self.arg[at] = len(self.op)
                return
            if t == "fixed":
                self.emit(_FIXED, int(schema["size"]))
                return
            if t == "enum":
                self._leaf(_LONG, path, slot, depth, enum=tuple(schema["symbols"]))
                return
            self.value(t, path, slot, depth)  # {"type": "long", "logicalType": ...}
            return
        if schema not in _PRIM:
            raise ValueError(f"unsupported Avro type {schema!r}")
        self._leaf(_PRIM[schema], path, slot, depth, string=schema == "string")

    def _leaf(
        self,
        op: int,
        path,
        slot: int,
        depth: int,
        string: bool = False,
        enum=None,
        null_branch: int = -1,
    ) -> None:
        keep = path is not None and op != _NULL and (op != _BYTES or string) and (depth <= 2)
        out = -1
        if keep:
            existing = [i for i, c in enumerate(self.columns) if c.path == path and not c.marker]
            if existing:
                out = existing[0]
                if self.columns[out].kind != op:  # a union of two value types: keep neither
                    self.columns[out].kind = -1
            else:
                self.columns.append(Column(path, op, slot, string, enum))
                out = len(self.columns) - 1
        if (
            null_branch >= 0
        ):  # a union of null and this type: the branch index, then the value unless null
            self.emit(_OPTIONAL, null_branch, op, out)
        else:
            self.emit(op, 0, 0, out)


def _is_container(schema, b: _Builder) -> bool:
    schema = b.resolve(schema)
    if isinstance(schema, list):
        return any(_is_container(s, b) for s in schema)
    return isinstance(schema, dict) and schema.get("type") in ("record", "array", "map")


def _is_record(schema, b: _Builder) -> bool:
    schema = b.resolve(schema)
    if isinstance(schema, list):
        return any(_is_record(s, b) for s in schema)
    return isinstance(schema, dict) and schema.get("type") == "record"


def compile_schema(schema: dict, wanted: dict[str, set[str]] | None = None) -> Program:
    """The walk of a writer schema (a top-level record); raises ``ValueError`` on a type it does not
    know.

    ``wanted``: the sub-records and arrays of records to keep, with the fields to keep of each
    (None: all); the top-level scalars are always kept."""
    b = _Builder(wanted)
    if not (isinstance(schema, dict) and schema.get("type") == "record"):
        raise ValueError("the top-level schema must be a record")
    b.value(schema, None, -1, 0)
    b.emit(_END)
    a = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return Program(
        a(b.op),
        a(b.arg),
        a(b.arg2),
        a(b.out),
        a(b.table if b.table else [0]),
        b.columns,
        b.slots,
        b.record_fields,
    )


@intrinsic
def _bytes_at(typingctx, address):
    """The int64 ``address`` as a pointer to bytes (of a message the caller keeps alive during
    the walk)."""
    sig = types.CPointer(types.uint8)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8)))

    return sig, codegen


@numba.njit(cache=True)
def _varint(data, pos, end):
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return 0, -1
        b = np.int64(data[pos])
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


@numba.njit(cache=True)
def _block_count(data, pos, end):
    """An Avro array block's item count; a negative count is followed by the block's byte size,
    skipped. Position -1 when the bytes end first."""
    cnt, pos = _varint(data, pos, end)
    if pos >= 0 and cnt < 0:
        cnt = -cnt
        _, pos = _varint(data, pos, end)
    return cnt, pos


@numba.njit(cache=True)
def _run(
    addresses,
    lengths,
    n_msg,
    chained,
    op,
    arg,
    arg2,
    out,
    table,
    col_slot,
    col_base,
    n_slots,
    cap,
    ints,
    flts,
    spos,
    slen,
    has,
    slot_count,
    slot_start,
    slot_len,
    slot_has,
    failed,
    text,
    text_used,
):
    """Walk every message (read where it is, at its address: nothing is copied but the strings kept,
    into ``text``); returns 0, 1 when an array outgrew ``cap``, 2 when ``text`` is full (call again
    with more room).

    ``chained``: the ``n_msg`` messages follow each other in the one buffer ``addresses[0]`` (an
    Avro container's block): each starts where the previous one ended, and one that cannot be
    walked fails it and all after it (their start is unknown). ``text_used[1]`` is then the
    number of bytes walked."""
    offset = 0
    used = 0
    counter = np.zeros(n_slots, np.int64)
    stack_ip = np.zeros(64, np.int64)
    stack_left = np.zeros(64, np.int64)
    for m in range(n_msg):
        saved = counter.copy()
        if chained:
            end = lengths[0] - offset
            data = numba.carray(_bytes_at(addresses[0] + offset), (end,))
        else:
            end = lengths[m]
            data = numba.carray(_bytes_at(addresses[m]), (end,))
        pos = 0
        ip = 0
        sp = 0
        ok = True
        for s in range(n_slots):
            slot_has[s, m] = 0
            slot_len[s, m] = 0
        while True:
            o = op[ip]
            if o == 12:  # OPTIONAL: a union of null (branch arg) and the type arg2
                k, pos = _varint(data, pos, end)
                if pos < 0 or k < 0 or k > 1:
                    ok = False
                    break
                if k == arg[ip]:
                    ip += 1
                    continue
                o = arg2[ip]  # the value, read below as a plain field
            elif o == 11:  # END
                if pos != end and not chained:
                    ok = False
                break
            elif o == 8:  # JUMP
                ip = arg[ip]
                continue
            elif o == 7:  # UNION
                k, pos = _varint(data, pos, end)
                if pos < 0 or k < 0 or k >= arg2[ip]:
                    ok = False
                    break
                ip = table[arg[ip] + k]
                continue
            elif o == 9:  # ARRAY: first block count
                cnt, pos = _block_count(data, pos, end)
                if pos < 0:
                    ok = False
                    break
                s = arg2[ip]
                if s >= 0:
                    slot_has[s, m] = 1
                    slot_start[s, m] = counter[s]
                if cnt == 0:
                    ip = arg[ip]
                    continue
                if sp >= 64:
                    ok = False
                    break
                stack_ip[sp] = ip
                stack_left[sp] = cnt
                sp += 1
                ip += 1
                continue
            elif o == 10:  # LOOP: one element done
                top = sp - 1
                a_ip = stack_ip[top]
                s = arg2[a_ip]
                if s >= 0:
                    counter[s] += 1
                    slot_len[s, m] += 1
                    if counter[s] >= cap:
                        return 1
                stack_left[top] -= 1
                if stack_left[top] == 0:
                    cnt, pos = _block_count(data, pos, end)
                    if pos < 0:
                        ok = False
                        break
                    if cnt == 0:
                        sp -= 1
                        ip = arg[a_ip]
                        continue
                    stack_left[top] = cnt
                ip = a_ip + 1
                continue
            c = out[ip]
            row = 0
            if c >= 0:
                row = col_base[c] + (m if col_slot[c] < 0 else counter[col_slot[c]])
            if o == 0:
                pass
            elif o == 13:
                ints[row] = 1
                has[row] = 1
            elif o == 1 or o == 2:
                if o == 1:
                    if pos >= end:
                        ok = False
                        break
                    v = np.int64(data[pos])
                    pos += 1
                else:
                    v, pos = _varint(data, pos, end)
                    if pos < 0:
                        ok = False
                        break
                if c >= 0:
                    ints[row] = v
                    has[row] = 1
            elif o == 3 or o == 4:
                size = 4 if o == 3 else 8
                if pos + size > end:
                    ok = False
                    break
                if c >= 0:
                    if o == 3:
                        flts[row] = np.float64(data[pos : pos + 4].view(np.float32)[0])
                    else:
                        flts[row] = data[pos : pos + 8].view(np.float64)[0]
                    has[row] = 1
                pos += size
            elif o == 5:
                ln, pos = _varint(data, pos, end)
                if pos < 0 or ln < 0 or pos + ln > end:
                    ok = False
                    break
                if c >= 0:
                    if used + ln > text.shape[0]:
                        return 2
                    text[used : used + ln] = data[pos : pos + ln]
                    spos[row] = used
                    slen[row] = ln
                    used += ln
                    has[row] = 1
                pos += ln
            elif o == 6:
                if pos + arg[ip] > end:
                    ok = False
                    break
                pos += arg[ip]
            ip += 1
        if not ok:
            failed[m] = 1
            for s in range(n_slots):
                counter[s] = saved[s]
                slot_len[s, m] = 0
                slot_has[s, m] = 0
            if chained:
                failed[m:] = 1
                break
        offset += pos
    for s in range(n_slots):
        slot_count[s] = counter[s]
    text_used[0] = used
    text_used[1] = offset
    return 0


def _strings(data: np.ndarray, pos: np.ndarray, ln: np.ndarray, valid: np.ndarray) -> pa.Array:
    ln = np.where(valid, ln, 0).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(ln)]).astype(
        np.int32 if ln.sum() < 2**31 else np.int64
    )
    total = int(ln.sum())
    if total:
        seg = np.repeat(pos - offsets[:-1], ln) + np.arange(total)
        values = data[seg]
    else:
        values = np.zeros(0, np.uint8)
    mask = pa.array(valid).buffers()[1] if not valid.all() else None  # the validity bitmap
    typ = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    arr = pa.Array.from_buffers(
        typ,
        len(ln),
        [mask, pa.py_buffer(offsets), pa.py_buffer(values)],
        null_count=int((~valid).sum()),
    )
    arr.validate(full=True)  # UTF-8
    return arr


def _array(
    prog: Program, c: int, col: Column, rows: int, data, ints, flts, spos, slen, has
) -> pa.Array | None:
    valid = has[:rows].astype(bool)
    if col.kind == -1:
        return None
    if col.string:
        return _strings(data, spos[:rows], slen[:rows], valid)
    if col.enum_symbols is not None:
        idx = np.where(valid, ints[:rows], 0)
        return pa.array(
            np.asarray(col.enum_symbols, dtype=object)[np.clip(idx, 0, len(col.enum_symbols) - 1)],
            pa.string(),
            mask=~valid,
        )
    if col.kind in (_FLOAT, _DOUBLE):
        return pa.array(flts[:rows], _ARROW[col.kind], mask=~valid)
    if col.kind == _BOOL:
        return pa.array(ints[:rows] != 0, pa.bool_(), mask=~valid)
    if col.kind == _LONG:
        return pa.array(ints[:rows], pa.int64(), mask=~valid)
    return None


def decode_columns(prog: Program, values: list[bytes]) -> tuple[pa.Table, np.ndarray]:
    """The messages (schemaless, all with ``prog``'s schema) as a nested Arrow table, and a mask
    of the messages the program could not walk exactly (their rows are null; decode them another
    way)."""
    n = len(values)
    lengths = np.fromiter((len(v) for v in values), np.int64, n)
    # each message is read in place (``values`` holds the bytes alive until the walk returns): a
    # batch of full alert packets is tens of MB, cutouts included, that joining into one buffer
    # would copy
    addresses = np.fromiter((np.frombuffer(v, np.uint8).ctypes.data for v in values), np.int64, n)
    table, bad, _ = _decode(prog, addresses, lengths, n, False)
    return table, bad


def decode_block(prog: Program, data, count: int) -> tuple[pa.Table, np.ndarray, int]:
    """``count`` records written one after the other in ``data`` (the bytes of an Avro
    container's blocks, decompressed) as a nested Arrow table, the mask of the records that could
    not be walked (one that fails fails all after it), and the number of bytes walked
    (``len(data)`` when the records fill the block exactly)."""
    buf = np.frombuffer(data, np.uint8)
    addresses = np.array([buf.ctypes.data], np.int64)
    lengths = np.array([len(buf)], np.int64)
    table, bad, used = _decode(prog, addresses, lengths, count, True)
    return table, bad, used


def _decode(
    prog: Program, addresses: np.ndarray, lengths: np.ndarray, n: int, chained: bool
) -> tuple[pa.Table, np.ndarray, int]:
    n_slots = len(prog.slots)
    col_slot = np.array([c.slot for c in prog.columns] or [0], np.int64)
    cap = max(64, prog.per_message * n)
    while True:
        sizes = np.array([n if c.slot < 0 else cap for c in prog.columns] or [1], np.int64)
        col_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        total = int(sizes.sum())
        ints = np.empty(total, np.int64)
        flts = np.empty(total, np.float64)
        spos = np.empty(total, np.int64)
        slen = np.empty(total, np.int64)
        has = np.zeros(total, np.uint8)
        slot_count = np.zeros(max(n_slots, 1), np.int64)
        slot_start = np.zeros((max(n_slots, 1), n), np.int64)
        slot_len = np.zeros((max(n_slots, 1), n), np.int64)
        slot_has = np.zeros((max(n_slots, 1), n), np.uint8)
        failed = np.zeros(n, np.uint8)
        text = np.empty(max(prog.text_per_message * n, 64), np.uint8)
        text_used = np.zeros(2, np.int64)
        status = _run(
            addresses,
            lengths,
            n,
            chained,
            prog.op,
            prog.arg,
            prog.arg2,
            prog.out,
            prog.table,
            col_slot,
            col_base,
            n_slots,
            cap,
            ints,
            flts,
            spos,
            slen,
            has,
            slot_count,
            slot_start,
            slot_len,
            slot_has,
            failed,
            text,
            text_used,
        )
        if status == 0:
            break
        if status == 1:
            cap *= 4
            prog.per_message *= 4  # later batches start with the room this one needed
        else:
            prog.text_per_message *= 4
    data = text[: int(text_used[0])]
    top: dict[str, pa.Array] = {}
    subrec: dict[str, dict[str, pa.Array]] = {}
    lists: dict[int, dict[str, pa.Array]] = {}
    present: dict[str, np.ndarray] = {}
    item_present: dict[int, np.ndarray] = {}
    for c, col in enumerate(prog.columns):
        rows = n if col.slot < 0 else int(slot_count[col.slot])
        b0 = int(col_base[c])
        if col.marker:
            if col.slot < 0:
                present[col.path[0]] = has[b0 : b0 + n].astype(bool)
            else:
                item_present[col.slot] = has[b0 : b0 + rows].astype(bool)
            continue
        arr = _array(prog, c, col, rows, data, ints[b0:], flts[b0:], spos[b0:], slen[b0:], has[b0:])
        if arr is None:
            continue
        if col.slot >= 0:
            lists.setdefault(col.slot, {})[col.path[1]] = arr
        elif len(col.path) == 1:
            top[col.path[0]] = arr
        else:
            subrec.setdefault(col.path[0], {})[col.path[1]] = arr
    bad = failed.astype(bool)
    names, arrays = [], []
    for name, arr in top.items():
        names.append(name)
        arrays.append(arr)
    for name in dict.fromkeys(
        [*subrec, *present]
    ):  # a sub-record is null where the message failed or did not have it
        fields = subrec.get(name, {})
        mask = pa.array(bad | ~present.get(name, ~bad))
        names.append(name)
        if fields:
            arrays.append(
                pa.StructArray.from_arrays(list(fields.values()), list(fields.keys()), mask=mask)
            )
        else:  # a sub-record none of whose fields is kept: only its presence
            arrays.append(
                pa.StructArray.from_arrays([pa.nulls(n, pa.bool_())], ["_present"], mask=mask)
            )
    for s, fields in lists.items():
        present = slot_has[s].astype(bool) & ~bad
        offsets = np.concatenate([[0], np.cumsum(slot_len[s])]).astype(np.int32)
        mask = (
            pa.array(~item_present[s]) if s in item_present and not item_present[s].all() else None
        )  # items may be null
        items = pa.StructArray.from_arrays(list(fields.values()), list(fields.keys()), mask=mask)
        names.append(prog.slots[s])
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(~present)))
    return pa.Table.from_arrays(arrays, names=names), bad, int(text_used[1])
