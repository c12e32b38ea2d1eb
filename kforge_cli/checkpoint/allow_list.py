"""What a checkpoint pickle may name, and the inert stand-ins it gets instead.

The allow-list maps each (module, name) a real checkpoint pickle uses to a
stand-in defined here: dtypes, storage classes and ``Parameter`` become
markers, tensor rebuild functions become builders returning
:class:`TensorStub` (shape and dtype only), the DCP metadata dataclasses
become :class:`Record` subclasses that only store their pickled state.
Nothing outside the list is ever imported or called. Also here: the errors
of unpickling, and :func:`check_key`, which decides which values from a file
may be hashed.
"""

from __future__ import annotations

import ntpath
import posixpath
import sys
from collections.abc import Callable
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from kforge_cli.findings import shown

# No real tensor has more dimensions; a deeper "shape" is a forged file.
MAX_NDIM = 64
MAX_DIM = 2**62


class Costs(Protocol):
    """What a builder charges its work to (the pickle machine)."""

    def charge(self, units: int) -> None: ...

    def copy(self, size: int) -> None: ...


class UnpicklingError(Exception):
    """Base of what loading a pickle raises; ``message`` is bounded text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ForbiddenGlobalError(UnpicklingError):
    """The pickle asked for something outside the allow-list; nothing was run."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not on the allow-list")
        self.what = what


class MalformedPickleError(UnpicklingError):
    """Bytes no real checkpoint pickle contains: bad opcodes, arguments or structure."""


class PickleTruncatedError(MalformedPickleError):
    """The pickle ends before its STOP opcode."""


class PickleLimitError(MalformedPickleError):
    """The pickle needs more of something than the caps in ``limits`` allow."""

    def __init__(self, message: str, cap: str) -> None:
        super().__init__(message)
        self.cap = cap


# --- stand-ins ------------------------------------------------------------------

class Inert:
    """Base of every stand-in: pickled state (BUILD) cannot alter it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise MalformedPickleError(f"{type(self).__name__} does not take pickled state")

    @property
    def describe_label(self) -> str:
        return f"<{type(self).__name__}>"


class DType(Inert):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    @property
    def describe_label(self) -> str:
        return repr(self)


class StorageType(Inert):
    """A ``torch.FloatStorage``-style class name, carrying its element dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class TypeMarker(Inert):
    """A class that only ever appears as an argument (``torch.nn.Parameter``)."""

    __slots__ = ("qualname",)

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname


class StorageRef(Inert):
    """What a storage persistent id names; the bytes stay on disk."""

    __slots__ = ("dtype", "key", "location", "numel")

    def __init__(self, dtype: str, key: str, location: str, numel: int) -> None:
        self.dtype = dtype
        self.key = key
        self.location = location
        self.numel = numel


class TensorStub(Inert):
    __slots__ = ("dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: str | None) -> None:
        self.shape = shape
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"TensorStub({self.shape}, {self.dtype})"

    @property
    def describe_label(self) -> str:
        return f"tensor{list(self.shape)}"


# A record before its BUILD: no fields, and none can be added by mistake.
_NO_FIELDS: Any = MappingProxyType({})


class Record:
    """Stand-in instance of a pickled dataclass (the DCP metadata classes).

    Dataclasses pickle as ``cls.__new__(cls)`` followed by BUILD with a field
    dict (``TensorProperties`` uses a tuple), so this only stores what it gets.
    Hashing and equality are by identity, as for any plain object.
    """

    __slots__ = ("fields", "state")
    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.fields: Any = _NO_FIELDS
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        # (dict_state, slot_state) is what objects with __slots__ pickle as.
        if type(state) is tuple and len(state) == 2 and type(state[1]) is dict \
                and (state[0] is None or type(state[0]) is dict):
            self.fields = {**self.fields, **(state[0] or {}), **state[1]}
        elif type(state) is dict:
            self.fields = {**self.fields, **state} if self.fields else state
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"<{self.kind} {shown(self.fields or self.state, 200)}>"

    @property
    def describe_label(self) -> str:
        return f"<{self.kind}>"


class Builder(Inert):
    """A callable stand-in for an allowed function or constructor.

    ``fn`` receives the machine (to charge work and check keys) and the arguments.
    """

    __slots__ = ("_fn", "label")

    def __init__(self, label: str, fn: Callable[..., Any]) -> None:
        self.label = label
        self._fn = fn

    def call(self, machine: Costs, args: tuple) -> Any:
        return self._fn(machine, *args)

    @property
    def describe_label(self) -> str:
        return f"<{self.label}>"


class PickledDict(dict):
    """Stand-in for ``OrderedDict``. ``module.state_dict()`` carries a
    ``_metadata`` attribute, pickled as BUILD state; it is kept, never used."""

    __slots__ = ("pickled_state",)

    def __setstate__(self, state: Any) -> None:
        self.pickled_state = state


def as_shape(value: Any) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > MAX_NDIM:
        raise MalformedPickleError(f"not a tensor shape: {shown(value)}")
    for dim in value:
        if type(dim) is not int or not 0 <= dim <= MAX_DIM:
            raise MalformedPickleError(f"not a tensor shape: {shown(value)}")
    return tuple(value)


# --- builders: what calling an allowed global does ----------------------------------

def _torch_size(machine: Costs, *args: Any) -> tuple[int, ...]:
    if len(args) != 1:
        raise MalformedPickleError("torch.Size takes one sequence")
    return as_shape(args[0])


TORCH_SIZE = Builder("torch.Size", _torch_size)


def _ordered_dict(machine: Costs, *args: Any) -> PickledDict:
    if not args:
        return PickledDict()
    pairs = args[0]
    if len(args) == 1 and type(pairs) in (list, tuple):
        machine.charge(len(pairs))
        for pair in pairs:
            if type(pair) not in (list, tuple) or len(pair) != 2:
                raise MalformedPickleError("unexpected OrderedDict arguments")
            check_key(pair[0])
        return PickledDict(pairs)
    raise MalformedPickleError("unexpected OrderedDict arguments")


def _storage_of(value: Any) -> StorageRef:
    if not isinstance(value, StorageRef):
        raise MalformedPickleError("tensor rebuilt from something that is not a storage")
    return value


def _rebuild_tensor(machine: Costs, storage: Any, offset: Any, size: Any, stride: Any,
                    *_: Any) -> TensorStub:
    return TensorStub(as_shape(size), _storage_of(storage).dtype)


def _rebuild_tensor_v3(machine: Costs, storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any, hooks: Any, dtype: Any, *_: Any) -> TensorStub:
    # v3 is used for dtypes without a legacy FooStorage class: the storage
    # is untyped bytes and the dtype travels as its own argument.
    _storage_of(storage)
    if not isinstance(dtype, DType):
        raise MalformedPickleError("_rebuild_tensor_v3 without a dtype")
    return TensorStub(as_shape(size), dtype.name)


def _rebuild_meta_tensor(machine: Costs, dtype: Any, size: Any, *_: Any) -> TensorStub:
    if not isinstance(dtype, DType):
        raise MalformedPickleError("meta tensor without a dtype")
    return TensorStub(as_shape(size), dtype.name)


def _rebuild_parameter(machine: Costs, data: Any, *_: Any) -> TensorStub:
    if not isinstance(data, TensorStub):
        raise MalformedPickleError("parameter wraps something that is not a tensor")
    return data


def _rebuild_from_type(machine: Costs, func: Any, new_type: Any, args: Any,
                       state: Any = None) -> TensorStub:
    # Tensors carrying Python attributes, and Parameters of older torch, are
    # pickled as "call func(*args), then retype". Only our own tensor builders
    # may be func, and only Tensor/Parameter may be the type.
    if not any(func is b for b in _TENSOR_BUILDERS) or not isinstance(new_type, TypeMarker) \
            or type(args) is not tuple:
        raise MalformedPickleError("unexpected _rebuild_from_type arguments")
    return func.call(machine, args)


def _layout(machine: Costs, name: Any) -> str:
    if type(name) is not str:
        raise MalformedPickleError("layout name must be a string")
    return name


def _memory_format_code(machine: Costs, code: Any) -> int:
    if type(code) is not int or code not in (0, 1, 2):
        raise MalformedPickleError(f"unknown memory format code {shown(code, 40)}")
    return code


def _device(machine: Costs, *args: Any) -> str:
    if not args or len(args) > 2 or type(args[0]) is not str \
            or (len(args) == 2 and args[1] is not None and type(args[1]) is not int):
        raise MalformedPickleError("unexpected torch.device arguments")
    return args[0] if len(args) == 1 or args[1] is None else f"{args[0]}:{args[1]}"


def _path_builder(join: Callable[..., str]) -> Callable[..., str]:
    def build(machine: Costs, *parts: Any) -> str:
        if not all(type(p) is str for p in parts):
            raise MalformedPickleError("path parts must be strings")
        machine.copy(sum(len(p) for p in parts))
        return join(*parts) if parts else ""
    return build


def _latin1_encode(machine: Costs, *args: Any) -> bytes:
    # Protocol 2 has no bytes opcode: b"..." is pickled as
    # _codecs.encode("...", "latin1"). Nothing else is accepted.
    if len(args) == 2 and type(args[0]) is str and type(args[1]) is str \
            and args[1] in ("latin1", "latin-1"):
        machine.copy(len(args[0]))
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise MalformedPickleError("_codecs.encode of text that is not latin-1") from None
    raise MalformedPickleError("_codecs.encode is only accepted for latin-1 bytes")


def _empty_bytes(machine: Costs, *args: Any) -> bytes:
    # ...and b"" as bytes(). bytes(n) would allocate n bytes, so no arguments.
    if args:
        raise MalformedPickleError("bytes() is only accepted without arguments")
    return b""


def _set_builder(kind: type) -> Callable[..., Any]:
    def build(machine: Costs, *args: Any) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and type(args[0]) in (list, tuple):
            machine.charge(len(args[0]))
            for member in args[0]:
                check_key(member)
            return kind(args[0])
        raise MalformedPickleError(f"unexpected {kind.__name__} arguments")
    return build


_TENSOR_BUILDERS: list[Builder] = []


def _tensor_builder(label: str, fn: Callable[..., Any]) -> Builder:
    builder = Builder(label, fn)
    _TENSOR_BUILDERS.append(builder)
    return builder


# --- the allow-list -----------------------------------------------------------
# (module, name) -> the stand-in find_class returns. Grouped by why it is needed.

_DTYPE_NAMES = (
    "float32", "float64", "float16", "bfloat16", "complex32", "complex64", "complex128",
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "bool",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
    *(f"int{n}" for n in range(1, 8)), *(f"uint{n}" for n in range(1, 8)),
)

# Legacy typed-storage classes torch.save still names in persistent ids.
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "QInt8Storage": "qint8", "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}

_DCP_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
# torch < 2.2 kept TensorProperties with the sharded-tensor code.
_OLD_SHARD_METADATA_MODULE = "torch.distributed._shard.sharded_tensor.metadata"

_RECORD_CLASSES = {
    (_DCP_METADATA_MODULE, "Metadata"),
    (_DCP_METADATA_MODULE, "TensorStorageMetadata"),
    (_DCP_METADATA_MODULE, "BytesStorageMetadata"),
    (_DCP_METADATA_MODULE, "TensorProperties"),
    (_DCP_METADATA_MODULE, "ChunkStorageMetadata"),
    (_DCP_METADATA_MODULE, "MetadataIndex"),
    (_DCP_METADATA_MODULE, "StorageMeta"),
    (_OLD_SHARD_METADATA_MODULE, "TensorProperties"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
}


def _make_allow_list() -> tuple[dict[tuple[str, str], Callable[[], Any]], frozenset[type]]:
    allowed: dict[tuple[str, str], Callable[[], Any]] = {}
    record_types: set[type] = set()

    def constant(key: tuple[str, str], value: Any) -> None:
        allowed[key] = lambda: value

    # DCP .metadata: the dataclasses it is made of. Each gets its own Record
    # subclass so the reader can tell them apart by ``kind``.
    for module, name in sorted(_RECORD_CLASSES):
        cls = type(name, (Record,), {"__slots__": (), "kind": name})
        record_types.add(cls)
        constant((module, name), cls)
    for module in (_DCP_METADATA_MODULE, _OLD_SHARD_METADATA_MODULE):
        for enum_name in ("_MEM_FORMAT_ENCODING", "MEM_FORMAT_ENCODING"):
            constant((module, enum_name), Builder("memory format", _memory_format_code))
    # StorageMeta.checkpoint_id is whatever path object the saver passed.
    for module in ("pathlib", "pathlib._local"):
        for name, join in (("PosixPath", posixpath.join), ("PurePosixPath", posixpath.join),
                           ("WindowsPath", ntpath.join), ("PureWindowsPath", ntpath.join)):
            constant((module, name), Builder(name, _path_builder(join)))

    # Shapes, dtypes and layouts: in both formats.
    constant(("torch", "Size"), TORCH_SIZE)
    for name in _DTYPE_NAMES:
        allowed[("torch", name)] = partial(DType, name)
    constant(("torch.serialization", "_get_layout"), Builder("layout", _layout))
    constant(("torch", "device"), Builder("torch.device", _device))

    # torch.save: tensor rebuild functions, storage classes, Parameter.
    constant(("torch._utils", "_rebuild_tensor"), _tensor_builder("tensor", _rebuild_tensor))
    constant(("torch._utils", "_rebuild_tensor_v2"), _tensor_builder("tensor", _rebuild_tensor))
    constant(("torch._utils", "_rebuild_tensor_v3"),
             _tensor_builder("tensor", _rebuild_tensor_v3))
    constant(("torch._utils", "_rebuild_meta_tensor_no_storage"),
             _tensor_builder("meta tensor", _rebuild_meta_tensor))
    constant(("torch._utils", "_rebuild_parameter"),
             _tensor_builder("parameter", _rebuild_parameter))
    constant(("torch._utils", "_rebuild_parameter_with_state"),
             _tensor_builder("parameter", _rebuild_parameter))
    for name in ("_rebuild_from_type", "_rebuild_from_type_v2"):
        constant(("torch._tensor", name), Builder("retyped tensor", _rebuild_from_type))
    for module, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                         ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter")):
        constant((module, name), TypeMarker(f"{module}.{name}"))
    for name, dtype in _STORAGE_DTYPES.items():
        constant(("torch", name), StorageType(dtype))
        constant(("torch.cuda", name), StorageType(dtype))  # pre-1.6 GPU saves
    for module in ("torch", "torch.storage"):
        constant((module, "UntypedStorage"), StorageType("uint8"))

    # Plain containers a protocol-2 pickle can only express through a global.
    # "__builtin__" is how protocol 2 spells "builtins"; find_class sees it raw.
    constant(("collections", "OrderedDict"), Builder("OrderedDict", _ordered_dict))
    constant(("_codecs", "encode"), Builder("bytes", _latin1_encode))
    for module in ("builtins", "__builtin__"):
        constant((module, "bytes"), Builder("bytes", _empty_bytes))
        constant((module, "set"), Builder("set", _set_builder(set)))
        constant((module, "frozenset"), Builder("frozenset", _set_builder(frozenset)))
    return allowed, frozenset(record_types)


_ALLOWED, RECORD_TYPES = _make_allow_list()

#: Every global a checkpoint pickle may name, as "module.name".
ALLOWED_GLOBALS: frozenset[str] = frozenset(f"{m}.{n}" for m, n in _ALLOWED)


def find_class(module: str, name: str) -> Any:
    factory = _ALLOWED.get((module, name))
    if factory is None:
        raise ForbiddenGlobalError(f"global {_clip(module)}.{_clip(name)}")
    return factory()


def _clip(text: str, size: int = 100) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"


# --- what may be hashed --------------------------------------------------------------

_HASH_MODULUS = sys.hash_info.modulus


def check_key(key: Any) -> None:
    """Refuse a dict key or set member whose hashing or comparing a file could make costly.

    Strings and bytes hash with a per-process random key; integers below the
    hash modulus hash to themselves, so distinct ones never collide; floats
    collide in small groups at most; stand-ins hash by identity. Tuples are
    refused: their hash is a fixed function an attacker can solve for, and
    hashing shared nested tuples is exponential in their depth.
    """
    kind = type(key)
    if kind is str or kind is bytes or kind is float or kind is bool or key is None:
        return
    if kind is int:
        if -_HASH_MODULUS < key < _HASH_MODULUS:
            return
        raise MalformedPickleError("an integer too large to be a dict key or set member")
    if kind in RECORD_TYPES or isinstance(key, Inert):
        return
    raise MalformedPickleError(
        f"a {kind.__name__} used as a dict key or set member (kforge hashes only strings, "
        "bytes, numbers and None from a file)")


CONTAINER_TYPES = frozenset({list, dict, tuple, set, frozenset, PickledDict}) | RECORD_TYPES
