"""Unpickle checkpoint metadata without importing or running anything, within fixed bounds.

DCP ``.metadata`` files and the ``data.pkl`` of a ``torch.save`` archive are
pickles, and a pickle can name any importable callable. This module runs the
pickle opcodes itself, in Python, instead of handing the bytes to
``pickle.Unpickler``:

* every global is resolved against the allow-list of
  :mod:`kforge_cli.checkpoint.allow_list` and comes back as an inert
  stand-in; tensors come back as shape and dtype, storage bytes are never read;
* the memo is never sized by a number from the file (the C unpickler grows
  its memo array to any index it is given, so a 9-byte pickle can ask for
  gigabytes): entries stored in order go in a list that grows by one per
  opcode, any other index in a dict, and both count against a cap;
* opcodes executed, objects created, bytes copied and nesting depth are
  counted against the caps in :mod:`kforge_cli.checkpoint.limits`;
* a value from the file is never hashed or compared unless its cost is
  bounded: dict keys and set members must be strings, bytes, bounded
  numbers, None or stand-ins (identity-hashed), so no crafted tuple or
  integer can make a dict insertion quadratic or exponential.

The worst a hostile file can do is fail to load, quickly.
"""

from __future__ import annotations

import codecs
import copyreg
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from kforge_cli.checkpoint import limits
from kforge_cli.checkpoint.allow_list import (
    CONTAINER_TYPES,
    RECORD_TYPES,
    TORCH_SIZE,
    Builder,
    ForbiddenGlobalError,
    Inert,
    MalformedPickleError,
    PickledDict,
    PickleLimitError,
    PickleTruncatedError,
    Record,
    StorageRef,
    StorageType,
    UnpicklingError,
    as_shape,
    check_key,
    find_class,
)
from kforge_cli.checkpoint.errors import (
    CheckpointError,
    CheckpointLimitError,
    UnsafeCheckpointError,
)
from kforge_cli.checkpoint.safe_io import size_text
from kforge_cli.findings import shown

HIGHEST_PROTOCOL = 5


# --- the machine ------------------------------------------------------------------------

class _Machine:
    """One pickle's opcodes, run over an in-memory buffer with every cost counted."""

    def __init__(self, data: bytes, pos: int, allow_storages: bool) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.allow_storages = allow_storages
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        # The memo: indices 0..n-1 as stored in order (what picklers write),
        # and any other index a file uses.
        self.dense: list[Any] = []
        self.sparse: dict[int, Any] = {}
        # id(container) -> nesting depth as built, for containers deeper than
        # 1 (any other counts as 1). A freed container's id taken by a new one
        # can only make the new one look deeper, never shallower.
        self.depths: dict[int, int] = {}
        self.work = 0
        self.objects = 0
        self.copied = 0
        self.storages: list[StorageRef] = []

    # --- accounting -------------------------------------------------------------

    def charge(self, units: int) -> None:
        self.work += units
        if self.work > limits.MAX_PICKLE_OPCODES:
            raise PickleLimitError(
                f"the pickle needs more than {limits.MAX_PICKLE_OPCODES:,} steps to load",
                "MAX_PICKLE_OPCODES")

    def copy(self, size: int) -> None:
        self.copied += size
        if self.copied > limits.MAX_PICKLE_COPIED_BYTES:
            raise PickleLimitError(
                f"the pickle copies more than {size_text(limits.MAX_PICKLE_COPIED_BYTES)} "
                "while loading", "MAX_PICKLE_COPIED_BYTES")

    def created(self, obj: Any) -> Any:
        self.objects += 1
        if self.objects > limits.MAX_PICKLE_OBJECTS:
            raise PickleLimitError(
                f"the pickle creates more than {limits.MAX_PICKLE_OBJECTS:,} objects",
                "MAX_PICKLE_OBJECTS")
        return obj

    def container(self, obj: Any, items: Any = ()) -> Any:
        """Register a new container holding ``items``; return it."""
        self.created(obj)
        self.depths[id(obj)] = self.nesting(self.deepest(items) + 1)
        return obj

    def deepest(self, items: Any) -> int:
        depths = self.depths
        best = 0
        for item in items:
            if type(item) in CONTAINER_TYPES:
                depth = depths.get(id(item), 1)
                if depth > best:
                    best = depth
        return best

    def grow(self, target: Any, items: Any) -> None:
        """``target`` now also holds ``items``: deepen it if they are deeper."""
        depth = self.deepest(items) + 1
        key = id(target)
        if depth > self.depths.get(key, 1):
            self.depths[key] = self.nesting(depth)

    @staticmethod
    def nesting(depth: int) -> int:
        if depth > limits.MAX_NESTING:
            raise PickleLimitError(
                f"the pickle nests containers more than {limits.MAX_NESTING} deep",
                "MAX_NESTING")
        return depth

    # --- the memo ----------------------------------------------------------------

    def memo_put(self, index: int, obj: Any) -> None:
        dense, sparse = self.dense, self.sparse
        size = len(dense)
        if index < size:
            dense[index] = obj
            return
        if index not in sparse and size + len(sparse) >= limits.MAX_PICKLE_MEMO:
            raise PickleLimitError(
                f"the pickle memoizes more than {limits.MAX_PICKLE_MEMO:,} objects",
                "MAX_PICKLE_MEMO")
        if index == size:
            dense.append(obj)
            sparse.pop(index, None)
        else:
            sparse[index] = obj

    def memo_get(self, index: int) -> Any:
        if index < len(self.dense):
            return self.dense[index]
        try:
            return self.sparse[index]
        except KeyError:
            raise MalformedPickleError(f"memo key {index} is not defined") from None

    # --- reading the buffer --------------------------------------------------------

    def take(self, size: int) -> bytes:
        start = self.pos
        stop = start + size
        if stop > self.end:
            raise PickleTruncatedError("the pickle ends early")
        self.pos = stop
        return self.data[start:stop]

    def line(self) -> bytes:
        stop = self.data.find(b"\n", self.pos, self.end)
        if stop < 0:
            raise PickleTruncatedError("the pickle ends early")
        start, self.pos = self.pos, stop + 1
        return self.data[start:stop]

    def size_arg(self, fmt: str, width: int) -> int:
        """A length prefix; a length past the end of the data is a truncated pickle."""
        (size,) = struct.unpack(fmt, self.take(width))
        if size > self.end - self.pos:
            raise PickleTruncatedError("the pickle ends early")
        return size

    # --- stack ----------------------------------------------------------------------

    def pop(self) -> Any:
        try:
            return self.stack.pop()
        except IndexError:
            raise MalformedPickleError("unpickling stack underflow") from None

    def top(self) -> Any:
        try:
            return self.stack[-1]
        except IndexError:
            raise MalformedPickleError("unpickling stack underflow") from None

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise MalformedPickleError("unpickling stack underflow (no MARK)")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def push(self, obj: Any) -> None:
        self.stack.append(obj)

    # --- running --------------------------------------------------------------------

    def run(self) -> Any:
        """Execute opcodes up to STOP and return the result.

        The opcodes real checkpoints are made of run inline on local
        variables (this loop is the reader's hot path); the rest go through
        the handler table with the state written back to ``self``.
        """
        data, end, dense, sparse, depths = self.data, self.end, self.dense, self.sparse, self.depths
        metastack, stack, pos = self.metastack, self.stack, self.pos
        work, objects = self.work, self.objects
        work_cap, object_cap = limits.MAX_PICKLE_OPCODES, limits.MAX_PICKLE_OBJECTS
        memo_cap, nesting_cap = limits.MAX_PICKLE_MEMO, limits.MAX_NESTING
        containers, records, handlers = CONTAINER_TYPES, RECORD_TYPES, _HANDLERS
        torch_size = TORCH_SIZE
        u16, i32, u32 = _U16, _I32, _U32
        try:
            while True:
                if pos >= end:
                    raise PickleTruncatedError("the pickle ends early")
                op = data[pos]
                pos += 1
                work += 1
                if work > work_cap or objects > object_cap:
                    self.work, self.objects = work, objects
                    self.charge(0)
                    self.created(None)
                if op == 0x94:  # MEMOIZE
                    if sparse or len(dense) >= memo_cap:
                        self.memo_put(len(dense) + len(sparse), stack[-1])
                    else:
                        dense.append(stack[-1])
                elif op == 0x68:  # BINGET
                    if pos >= end:
                        raise PickleTruncatedError("the pickle ends early")
                    index = data[pos]
                    stack.append(dense[index] if index < len(dense) else sparse[index])
                    pos += 1
                elif op == 0x6A:  # LONG_BINGET
                    if pos + 4 > end:
                        raise PickleTruncatedError("the pickle ends early")
                    index = u32(data, pos)[0]
                    stack.append(dense[index] if index < len(dense) else sparse[index])
                    pos += 4
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                elif op == 0x4E:  # NONE
                    stack.append(None)
                elif op == 0x28:  # MARK
                    if len(metastack) >= nesting_cap:
                        raise PickleLimitError(
                            f"the pickle nests MARKs more than {nesting_cap} deep", "MAX_NESTING")
                    metastack.append(stack)
                    stack = []
                elif op == 0x4B:  # BININT1
                    if pos >= end:
                        raise PickleTruncatedError("the pickle ends early")
                    stack.append(data[pos])
                    pos += 1
                elif op == 0x81:  # NEWOBJ
                    args = stack.pop()
                    cls = stack[-1]
                    if type(cls) is not type or cls not in records or type(args) is not tuple:
                        _new_record(self, cls, args, None)  # raises the precise error
                    stack[-1] = cls()
                    objects += 1
                elif op == 0x62:  # BUILD
                    state = stack.pop()
                    inst = stack[-1]
                    if type(inst) in records and type(state) is dict and not inst.fields:
                        # A dataclass record taking its field dict: adopt it.
                        inst.fields = state
                        depth = depths.get(id(state), 1) + 1
                        if depth > 2:
                            depths[id(inst)] = self.nesting(depth)
                    else:
                        self.work = work
                        _build(self, inst, state)
                        work = self.work
                elif op == 0x85 or op == 0x86 or op == 0x87:  # TUPLE1, TUPLE2, TUPLE3
                    count = op - 0x84
                    if len(stack) < count:
                        raise IndexError
                    value = tuple(stack[-count:])
                    del stack[-count:]
                    depth = 0
                    for item in value:
                        if type(item) in containers:
                            inner = depths.get(id(item), 1)
                            if inner > depth:
                                depth = inner
                    if depth:
                        if depth >= nesting_cap:
                            self.nesting(depth + 1)
                        depths[id(value)] = depth + 1
                    stack.append(value)
                    objects += 1
                elif op == 0x7D:  # EMPTY_DICT
                    stack.append({})
                    objects += 1
                elif op == 0x75:  # SETITEMS
                    items = stack
                    stack = metastack.pop()
                    target = stack[-1]
                    if type(target) is dict and not len(items) % 2:
                        # The common case inline: _set_items with string keys.
                        depth = 0
                        for index in range(0, len(items), 2):
                            key = items[index]
                            if type(key) is not str:
                                check_key(key)
                                if type(key) in containers:
                                    inner = depths.get(id(key), 1)
                                    if inner > depth:
                                        depth = inner
                            value = items[index + 1]
                            if type(value) in containers:
                                inner = depths.get(id(value), 1)
                                if inner > depth:
                                    depth = inner
                            target[key] = value
                        if depth and depth + 1 > depths.get(id(target), 1):
                            depths[id(target)] = self.nesting(depth + 1)
                    else:
                        _set_items(self, target, items)
                elif op == 0x52:  # REDUCE
                    args = stack.pop()
                    func = stack[-1]
                    if func is torch_size and type(args) is tuple and len(args) == 1 \
                            and type(args[0]) is tuple:
                        # torch.Size(a_tuple) is that tuple: a shape or chunk offset,
                        # the most common call by far in DCP metadata.
                        stack[-1] = as_shape(args[0])
                    else:
                        self.work, self.objects = work, objects
                        stack[-1] = _call(self, func, args)
                        work, objects = self.work, self.objects
                elif op == 0x89:  # NEWFALSE
                    stack.append(False)
                elif op == 0x8C:  # SHORT_BINUNICODE
                    if pos >= end:
                        raise PickleTruncatedError("the pickle ends early")
                    stop = pos + 1 + data[pos]
                    if stop > end:
                        raise PickleTruncatedError("the pickle ends early")
                    stack.append(_utf8(data[pos + 1:stop]))
                    pos = stop
                    objects += 1
                elif op == 0x58:  # BINUNICODE
                    if pos + 4 > end:
                        raise PickleTruncatedError("the pickle ends early")
                    stop = pos + 4 + u32(data, pos)[0]
                    if stop > end:
                        raise PickleTruncatedError("the pickle ends early")
                    stack.append(_utf8(data[pos + 4:stop]))
                    pos = stop
                    objects += 1
                elif op == 0x74:  # TUPLE
                    items = stack
                    stack = metastack.pop()
                    value = tuple(items)
                    self.objects = objects
                    stack.append(self.container(value, value))
                    objects = self.objects
                elif op == 0x4D:  # BININT2
                    if pos + 2 > end:
                        raise PickleTruncatedError("the pickle ends early")
                    stack.append(u16(data, pos)[0])
                    pos += 2
                elif op == 0x4A:  # BININT
                    if pos + 4 > end:
                        raise PickleTruncatedError("the pickle ends early")
                    stack.append(i32(data, pos)[0])
                    pos += 4
                    objects += 1
                elif op == 0x5D:  # EMPTY_LIST
                    stack.append([])
                    objects += 1
                elif op == 0x61:  # APPEND
                    value = stack.pop()
                    _append(self, stack[-1], [value])
                elif op == 0x65:  # APPENDS
                    items = stack
                    stack = metastack.pop()
                    _append(self, stack[-1], items)
                elif op == 0x73:  # SETITEM
                    value = stack.pop()
                    key = stack.pop()
                    _set_items(self, stack[-1], [key, value])
                elif op == 0x71:  # BINPUT
                    if pos >= end:
                        raise PickleTruncatedError("the pickle ends early")
                    index = data[pos]
                    if index == len(dense) and not sparse and index < memo_cap:
                        dense.append(stack[-1])
                    else:
                        self.memo_put(index, stack[-1])
                    pos += 1
                elif op == 0x72:  # LONG_BINPUT
                    if pos + 4 > end:
                        raise PickleTruncatedError("the pickle ends early")
                    index = u32(data, pos)[0]
                    if index == len(dense) and not sparse and index < memo_cap:
                        dense.append(stack[-1])
                    else:
                        self.memo_put(index, stack[-1])
                    pos += 4
                elif op == 0x88:  # NEWTRUE
                    stack.append(True)
                elif op == 0x32:  # DUP
                    stack.append(stack[-1])
                elif op == 0x30:  # POP
                    if stack:
                        stack.pop()
                    else:
                        stack = metastack.pop()
                elif op == 0x2E:  # STOP
                    self.pos = pos
                    return stack.pop()
                else:
                    handler = handlers[op]
                    if handler is None:
                        raise MalformedPickleError(
                            f"invalid pickle opcode 0x{op:02x} at byte {pos - 1}")
                    self.pos, self.stack, self.work, self.objects = pos, stack, work, objects
                    handler(self)
                    pos, stack, work, objects = self.pos, self.stack, self.work, self.objects
        except IndexError:
            raise MalformedPickleError("unpickling stack underflow") from None
        except KeyError as exc:
            raise MalformedPickleError(
                f"memo key {shown(exc.args[0] if exc.args else None, 20)} is not defined"
            ) from None


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise MalformedPickleError("text in the pickle is not utf-8") from None


_U16 = struct.Struct("<H").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from


# --- shared steps of the inline opcodes ----------------------------------------------

def _set_items(m: _Machine, target: Any, items: list[Any]) -> None:
    if type(target) is not dict and type(target) is not PickledDict:
        raise MalformedPickleError(f"SETITEM on {shown(target, 40)}, which is not a dict")
    if len(items) % 2:
        raise MalformedPickleError("odd number of items for SETITEMS")
    for key in items[::2]:
        check_key(key)
    m.grow(target, items)
    for index in range(0, len(items), 2):
        target[items[index]] = items[index + 1]


def _append(m: _Machine, target: Any, items: list[Any]) -> None:
    if type(target) is not list:
        raise MalformedPickleError(f"APPEND to {shown(target, 40)}, which is not a list")
    m.grow(target, items)
    target.extend(items)


def _build(m: _Machine, inst: Any, state: Any) -> None:
    if not isinstance(inst, (Record, Inert, PickledDict)):
        raise MalformedPickleError(f"BUILD on {shown(inst, 40)}, which takes no state")
    # Merging a state dict copies it: charge that, as the same state can be
    # fetched from the memo and applied again and again.
    for part in state if type(state) is tuple else (state,):
        if isinstance(part, dict):
            m.charge(len(part))
    inst.__setstate__(state)
    m.grow(inst, (state,))


def _call(m: _Machine, func: Any, args: Any) -> Any:
    """What calling an allowed global with ``args`` builds (REDUCE, INST, OBJ)."""
    if type(args) is not tuple:
        raise MalformedPickleError("call arguments must be a tuple")
    if isinstance(func, Builder):
        m.charge(len(args))
        result = func.call(m, args)
    elif type(func) is type and func in RECORD_TYPES:
        if args:
            raise MalformedPickleError(f"{func.__name__} is never constructed with arguments")
        result = func()
    else:
        raise MalformedPickleError(f"{shown(func, 60)} cannot be called")
    if type(result) in CONTAINER_TYPES:
        return m.container(result, result.values() if isinstance(result, dict) else result)
    return m.created(result)


def _new_record(m: _Machine, cls: Any, args: Any, kwargs: Any) -> Record:
    """``cls.__new__(cls)`` for NEWOBJ and NEWOBJ_EX: only the DCP record classes."""
    if type(cls) is not type or cls not in RECORD_TYPES:
        raise MalformedPickleError(f"{shown(cls, 60)} cannot be instantiated")
    if type(args) is not tuple or (kwargs is not None and type(kwargs) is not dict):
        raise MalformedPickleError("NEWOBJ arguments must be a tuple")
    return m.container(cls())


# --- handlers of the other opcodes ------------------------------------------------------
# Semantics follow CPython's pickle.py (_Unpickler.load_*), with the checks above.

def _op_proto(m: _Machine) -> None:
    version = m.take(1)[0]
    if version > HIGHEST_PROTOCOL:
        raise MalformedPickleError(f"unsupported pickle protocol {version}")


def _op_frame(m: _Machine) -> None:
    # The whole pickle is already in memory; a frame only announces its length.
    m.take(8)


def _op_persid(m: _Machine) -> None:
    try:
        pid = m.line().decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPickleError("persistent id is not ASCII") from None
    m.push(_persistent_load(m, pid))


def _op_binpersid(m: _Machine) -> None:
    m.push(_persistent_load(m, m.pop()))


def _persistent_load(m: _Machine, pid: Any) -> StorageRef:
    # torch.save: ('storage', StorageType, key, location, numel[, view]).
    if not m.allow_storages:
        raise ForbiddenGlobalError("a persistent id")
    if type(pid) is not tuple or not pid or type(pid[0]) is not str or pid[0] != "storage":
        kind = pid[0] if type(pid) is tuple and pid else pid
        kind_text = kind if type(kind) is str else type(kind).__name__
        raise ForbiddenGlobalError(f"persistent id of kind {shown(kind_text, 40)}")
    if len(pid) not in (5, 6) or not isinstance(pid[1], StorageType) \
            or type(pid[2]) is not str or type(pid[3]) is not str \
            or type(pid[4]) is not int or pid[4] < 0 or len(pid[2]) > 256 or len(pid[3]) > 256:
        raise MalformedPickleError("malformed storage reference")
    ref = m.created(StorageRef(pid[1].dtype, pid[2], pid[3], pid[4]))
    m.storages.append(ref)
    return ref


def _decimal(text: bytes, what: str) -> int:
    digits = text.lstrip(b"+-")
    if not digits.isdigit() or len(digits) > limits.MAX_INT_DIGITS:
        raise MalformedPickleError(f"bad {what} in the pickle: {shown(text, 40)}")
    return int(text)


def _op_int(m: _Machine) -> None:
    text = m.line()
    if text == b"00":
        value: Any = False
    elif text == b"01":
        value = True
    else:
        value = _decimal(text, "integer")
    m.push(m.created(value))


def _op_long(m: _Machine) -> None:
    text = m.line()
    if text.endswith(b"L"):
        text = text[:-1]
    m.push(m.created(_decimal(text, "integer")))


def _long_bytes(m: _Machine, size: int) -> None:
    if size > limits.MAX_INT_BYTES:
        raise PickleLimitError(f"the pickle holds a {size}-byte integer (the cap is "
                               f"{limits.MAX_INT_BYTES} bytes)", "MAX_INT_BYTES")
    m.push(m.created(int.from_bytes(m.take(size), "little", signed=True)))


def _op_long1(m: _Machine) -> None:
    _long_bytes(m, m.take(1)[0])


def _op_long4(m: _Machine) -> None:
    (size,) = struct.unpack("<i", m.take(4))
    if size < 0:
        raise MalformedPickleError("LONG pickle has negative byte count")
    _long_bytes(m, size)


def _op_float(m: _Machine) -> None:
    text = m.line()
    if len(text) > 64:
        raise MalformedPickleError("bad float in the pickle")
    try:
        m.push(m.created(float(text)))
    except ValueError:
        raise MalformedPickleError("bad float in the pickle") from None


def _op_binfloat(m: _Machine) -> None:
    m.push(m.created(struct.unpack(">d", m.take(8))[0]))


def _op_string(m: _Machine) -> None:
    raw = m.line()
    if len(raw) < 2 or raw[0] != raw[-1] or raw[0] not in b"\"'":
        raise MalformedPickleError("the STRING opcode argument must be quoted")
    try:
        unescaped = codecs.escape_decode(raw[1:-1])[0]
    except ValueError:
        raise MalformedPickleError("bad STRING escape in the pickle") from None
    # Python 2 str, decoded as torch.load does (encoding="utf-8").
    m.push(m.created(_utf8(unescaped)))


def _op_binstring(m: _Machine) -> None:
    (size,) = struct.unpack("<i", m.take(4))
    if size < 0:
        raise MalformedPickleError("BINSTRING pickle has negative byte count")
    m.push(m.created(_utf8(m.take(size))))


def _op_short_binstring(m: _Machine) -> None:
    m.push(m.created(_utf8(m.take(m.take(1)[0]))))


def _op_binbytes(m: _Machine) -> None:
    m.push(m.created(m.take(m.size_arg("<I", 4))))


def _op_short_binbytes(m: _Machine) -> None:
    m.push(m.created(m.take(m.take(1)[0])))


def _op_binbytes8(m: _Machine) -> None:
    m.push(m.created(m.take(m.size_arg("<Q", 8))))


def _op_bytearray8(m: _Machine) -> None:
    m.push(m.created(bytearray(m.take(m.size_arg("<Q", 8)))))


def _op_unicode(m: _Machine) -> None:
    try:
        m.push(m.created(m.line().decode("raw-unicode-escape")))
    except UnicodeDecodeError:
        raise MalformedPickleError("bad UNICODE escape in the pickle") from None


def _op_binunicode8(m: _Machine) -> None:
    m.push(m.created(_utf8(m.take(m.size_arg("<Q", 8)))))


def _op_out_of_band(m: _Machine) -> None:
    raise MalformedPickleError("out-of-band buffers are not used by checkpoints")


def _op_empty_set(m: _Machine) -> None:
    m.push(m.container(set()))


def _op_frozenset(m: _Machine) -> None:
    items = m.pop_mark()
    for item in items:
        check_key(item)
    m.push(m.container(frozenset(items), items))


def _op_list(m: _Machine) -> None:
    items = m.pop_mark()
    m.push(m.container(items, items))


def _op_dict(m: _Machine) -> None:
    items = m.pop_mark()
    result = m.container({})
    _set_items(m, result, items)
    m.push(result)


def _op_additems(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.top()
    if type(target) is not set:
        raise MalformedPickleError(f"ADDITEMS to {shown(target, 40)}, which is not a set")
    for item in items:
        check_key(item)
    m.grow(target, items)
    target.update(items)


def _op_pop_mark(m: _Machine) -> None:
    m.pop_mark()


def _op_get(m: _Machine) -> None:
    m.push(m.memo_get(_decimal(m.line(), "memo key")))


def _op_put(m: _Machine) -> None:
    index = _decimal(m.line(), "memo key")
    if index < 0:
        raise MalformedPickleError("negative PUT argument")
    m.memo_put(index, m.top())


def _global_name(m: _Machine) -> tuple[str, str]:
    return _utf8(m.line()), _utf8(m.line())


def _op_global(m: _Machine) -> None:
    m.push(find_class(*_global_name(m)))


def _op_stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if type(name) is not str or type(module) is not str:
        raise MalformedPickleError("STACK_GLOBAL requires str")
    m.push(find_class(module, name))


def _extension(m: _Machine, code: int) -> None:
    # The copyreg extension registry names a global by number; resolve the
    # number to its name and send that through the allow-list like any other.
    key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
    if key is None:
        raise MalformedPickleError(f"unregistered extension code {code}")
    m.push(find_class(*key))


def _op_ext1(m: _Machine) -> None:
    _extension(m, m.take(1)[0])


def _op_ext2(m: _Machine) -> None:
    _extension(m, struct.unpack("<H", m.take(2))[0])


def _op_ext4(m: _Machine) -> None:
    _extension(m, struct.unpack("<i", m.take(4))[0])


def _op_newobj_ex(m: _Machine) -> None:
    kwargs = m.pop()
    args = m.pop()
    cls = m.pop()
    m.push(_new_record(m, cls, args, kwargs))


def _instantiate(m: _Machine, klass: Any, args: list[Any]) -> None:
    if type(klass) is type and klass in RECORD_TYPES:
        if args:
            raise MalformedPickleError(f"{klass.__name__} is never constructed with arguments")
        m.push(m.container(klass()))
    else:
        m.push(_call(m, klass, tuple(args)))


def _op_inst(m: _Machine) -> None:
    klass = find_class(*_global_name(m))
    _instantiate(m, klass, m.pop_mark())


def _op_obj(m: _Machine) -> None:
    args = m.pop_mark()
    if not args:
        raise MalformedPickleError("OBJ without a class")
    _instantiate(m, args[0], args[1:])


def _handler_table() -> list[Callable[[_Machine], Any] | None]:
    table: list[Callable[[_Machine], Any] | None] = [None] * 256
    by_code = {
        b"\x80": _op_proto, b"\x95": _op_frame, b"P": _op_persid, b"Q": _op_binpersid,
        b"I": _op_int, b"L": _op_long, b"\x8a": _op_long1, b"\x8b": _op_long4,
        b"F": _op_float, b"G": _op_binfloat,
        b"S": _op_string, b"T": _op_binstring, b"U": _op_short_binstring,
        b"B": _op_binbytes, b"C": _op_short_binbytes, b"\x8e": _op_binbytes8,
        b"\x96": _op_bytearray8, b"\x97": _op_out_of_band, b"\x98": _op_out_of_band,
        b"V": _op_unicode, b"\x8d": _op_binunicode8,
        b"\x8f": _op_empty_set, b"\x90": _op_additems, b"\x91": _op_frozenset,
        b"l": _op_list, b"d": _op_dict,
        b"1": _op_pop_mark,
        b"g": _op_get, b"p": _op_put,
        b"c": _op_global, b"\x93": _op_stack_global,
        b"\x82": _op_ext1, b"\x83": _op_ext2, b"\x84": _op_ext4,
        b"\x92": _op_newobj_ex, b"i": _op_inst, b"o": _op_obj,
    }
    for code, handler in by_code.items():
        table[code[0]] = handler
    return table


_HANDLERS = _handler_table()


def load_pickle(data: bytes, pos: int = 0, *, allow_storages: bool = False
                ) -> tuple[Any, list[StorageRef], int]:
    """Run the pickle starting at ``data[pos]``.

    Returns the object, the storages it names and the offset just past its
    STOP opcode (torch.save's legacy format puts pickles back to back).
    Raises :class:`UnpicklingError` subclasses and nothing else.
    """
    machine = _Machine(data, pos, allow_storages)
    try:
        obj = machine.run()
    except UnpicklingError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise PickleLimitError(f"the pickle is too large or deep to load ({type(exc).__name__})",
                               "memory") from None
    except (ValueError, TypeError, OverflowError, AttributeError, UnicodeError,
            struct.error) as exc:
        # An allowed builder or container refusing its arguments in a way the
        # checks above did not foresee: still only a malformed file.
        raise MalformedPickleError(f"{type(exc).__name__} while loading") from None
    return obj, machine.storages, machine.pos


def restricted_load(file: BinaryIO | bytes, *, allow_storages: bool = False
                    ) -> tuple[Any, list[StorageRef]]:
    """Load one pickle from ``file`` (a binary stream or bytes); the object and its storages."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
    else:
        data = file.read(limits.MAX_PICKLE_BYTES + 1)
    if len(data) > limits.MAX_PICKLE_BYTES:
        raise PickleLimitError(f"the pickle is over the {size_text(limits.MAX_PICKLE_BYTES)} "
                               "limit", "MAX_PICKLE_BYTES")
    obj, storages, _ = load_pickle(data, allow_storages=allow_storages)
    return obj, storages


# --- as the readers use it -------------------------------------------------------------

def unpickle(data: bytes, path: str, *, allow_storages: bool, what: str, pos: int = 0,
             cut_at_cap: bool = False) -> tuple[Any, list[StorageRef], int]:
    """:func:`load_pickle` with every failure turned into a checkpoint error about ``path``.

    A global outside the allow-list is an :class:`UnsafeCheckpointError`; a
    cap is named in the message; anything else malformed says the file is not
    ``what``. ``cut_at_cap``: ``data`` is the first MAX_PICKLE_BYTES of a longer
    file, so running off its end means the pickle is over that cap.
    """
    try:
        return load_pickle(data, pos, allow_storages=allow_storages)
    except ForbiddenGlobalError as exc:
        raise UnsafeCheckpointError(
            f"refusing to read {path}: its pickle asks for {exc.what}, which is not on "
            "kforge's allow-list of inert checkpoint globals (nothing was executed)",
            hint="kforge never runs code from a checkpoint; if you trust the file, re-save "
                 "the weights as model.state_dict() with torch.save or as .safetensors",
            global_name=exc.what[len("global "):] if exc.what.startswith("global ") else None,
        ) from None
    except PickleTruncatedError:
        if cut_at_cap:
            raise CheckpointLimitError(
                f"refusing to read {path}: its pickles run past the "
                f"{size_text(limits.MAX_PICKLE_BYTES)} limit", "MAX_PICKLE_BYTES") from None
        raise CheckpointError(f"{path} is truncated: the pickle ends early",
                              hint="the copy or the save was cut short") from None
    except PickleLimitError as exc:
        raise CheckpointLimitError(f"refusing to read {path}: {exc.message}", exc.cap) from None
    except UnpicklingError as exc:
        raise CheckpointError(f"{path} is not {what} ({exc.message})",
                              hint="the file is corrupt or of another kind") from None
