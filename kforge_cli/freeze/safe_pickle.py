"""Unpickle checkpoint metadata without importing or running anything from the file.

DCP ``.metadata`` files and the ``data.pkl`` of a ``torch.save`` archive are
pickles, and a pickle can name any importable callable. This loader resolves
every global against an explicit allow-list and hands back inert stand-ins
defined here, so the worst a hostile file can do is fail to load. Tensors come
back as :class:`TensorStub` (shape and dtype only); storage bytes are never
read.
"""

from __future__ import annotations

import ntpath
import pickle
import posixpath
from typing import Any, BinaryIO, Callable, ClassVar

# No real tensor has more dimensions; a deeper "shape" is a forged file.
MAX_NDIM = 64
MAX_DIM = 2**62


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list; nothing was run."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not on the allow-list")
        self.what = what


class MalformedPickleError(pickle.UnpicklingError):
    """An allowed global was used with arguments no real checkpoint contains."""


class _Inert:
    """Base of every stand-in: pickled state (BUILD) cannot alter it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise MalformedPickleError(f"{type(self).__name__} does not take pickled state")


class DType(_Inert):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class StorageType(_Inert):
    """A ``torch.FloatStorage``-style class name, carrying its element dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class TypeMarker(_Inert):
    """A class that only ever appears as an argument (``torch.nn.Parameter``)."""

    __slots__ = ("qualname",)

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname


class StorageRef(_Inert):
    """What a storage persistent id names; the bytes stay on disk."""

    __slots__ = ("dtype", "key", "location", "numel")

    def __init__(self, dtype: str, key: str, location: str, numel: int) -> None:
        self.dtype = dtype
        self.key = key
        self.location = location
        self.numel = numel


class TensorStub(_Inert):
    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple[int, ...], dtype: str | None) -> None:
        self.shape = shape
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"TensorStub({self.shape}, {self.dtype})"


class Record:
    """Stand-in instance of a pickled dataclass (the DCP metadata classes).

    Dataclasses pickle as ``cls.__new__(cls)`` followed by BUILD with a field
    dict (``TensorProperties`` uses a tuple), so this only stores what it gets.
    """

    __slots__ = ("fields", "state")
    kind: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        obj = object.__new__(cls)
        obj.fields = {}
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise MalformedPickleError(f"{self.kind} is never constructed with arguments")

    def __setstate__(self, state: Any) -> None:
        # (dict_state, slot_state) is what objects with __slots__ pickle as.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict) \
                and (state[0] is None or isinstance(state[0], dict)):
            self.fields.update(state[0] or {})
            self.fields.update(state[1])
        elif isinstance(state, dict):
            self.fields.update(state)
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"<{self.kind} {self.fields or self.state}>"


class _Builder(_Inert):
    """A callable stand-in for an allowed function or constructor."""

    __slots__ = ("label", "_fn")

    def __init__(self, label: str, fn: Callable[..., Any]) -> None:
        self.label = label
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def as_shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_NDIM:
        raise MalformedPickleError(f"not a tensor shape: {value!r:.80}")
    for dim in value:
        if type(dim) is not int or not 0 <= dim <= MAX_DIM:
            raise MalformedPickleError(f"not a tensor shape: {value!r:.80}")
    return tuple(value)


# --- builders -----------------------------------------------------------------

def _torch_size(*args: Any) -> tuple[int, ...]:
    if len(args) != 1:
        raise MalformedPickleError("torch.Size takes one sequence")
    return as_shape(args[0])


class PickledDict(dict):
    """Stand-in for ``OrderedDict``. ``module.state_dict()`` carries a
    ``_metadata`` attribute, pickled as BUILD state; it is kept, never used."""

    __slots__ = ("pickled_state",)

    def __setstate__(self, state: Any) -> None:
        self.pickled_state = state


def _ordered_dict(*args: Any) -> PickledDict:
    if not args:
        return PickledDict()
    if len(args) == 1 and isinstance(args[0], (list, tuple)) \
            and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in args[0]):
        return PickledDict(args[0])
    raise MalformedPickleError("unexpected OrderedDict arguments")


def _storage_of(value: Any) -> StorageRef:
    if not isinstance(value, StorageRef):
        raise MalformedPickleError("tensor rebuilt from something that is not a storage")
    return value


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorStub:
    return TensorStub(as_shape(size), _storage_of(storage).dtype)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any, hooks: Any, dtype: Any, *_: Any) -> TensorStub:
    # v3 is used for dtypes without a legacy FooStorage class: the storage
    # is untyped bytes and the dtype travels as its own argument.
    _storage_of(storage)
    if not isinstance(dtype, DType):
        raise MalformedPickleError("_rebuild_tensor_v3 without a dtype")
    return TensorStub(as_shape(size), dtype.name)


def _rebuild_meta_tensor(dtype: Any, size: Any, *_: Any) -> TensorStub:
    if not isinstance(dtype, DType):
        raise MalformedPickleError("meta tensor without a dtype")
    return TensorStub(as_shape(size), dtype.name)


def _rebuild_parameter(data: Any, *_: Any) -> TensorStub:
    if not isinstance(data, TensorStub):
        raise MalformedPickleError("parameter wraps something that is not a tensor")
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> TensorStub:
    # Tensors carrying Python attributes, and Parameters of older torch, are
    # pickled as "call func(*args), then retype". Only our own tensor builders
    # may be func, and only Tensor/Parameter may be the type.
    if not any(func is b for b in _TENSOR_BUILDERS) or not isinstance(new_type, TypeMarker) \
            or not isinstance(args, tuple):
        raise MalformedPickleError("unexpected _rebuild_from_type arguments")
    return func(*args)


def _layout(name: Any) -> str:
    if not isinstance(name, str):
        raise MalformedPickleError("layout name must be a string")
    return name


def _memory_format_code(code: Any) -> int:
    if code not in (0, 1, 2):
        raise MalformedPickleError(f"unknown memory format code {code!r:.40}")
    return code


def _device(*args: Any) -> str:
    if not args or len(args) > 2 or not isinstance(args[0], str) \
            or (len(args) == 2 and not isinstance(args[1], (int, type(None)))):
        raise MalformedPickleError("unexpected torch.device arguments")
    return args[0] if len(args) == 1 or args[1] is None else f"{args[0]}:{args[1]}"


def _path_builder(join: Callable[..., str]) -> Callable[..., str]:
    def build(*parts: Any) -> str:
        if not all(isinstance(p, str) for p in parts):
            raise MalformedPickleError("path parts must be strings")
        return join(*parts) if parts else ""
    return build


def _latin1_encode(*args: Any) -> bytes:
    # Protocol 2 has no bytes opcode: b"..." is pickled as
    # _codecs.encode("...", "latin1"). Nothing else is accepted.
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise MalformedPickleError("_codecs.encode is only accepted for latin-1 bytes")


def _empty_bytes(*args: Any) -> bytes:
    # ...and b"" as bytes(). bytes(n) would allocate n bytes, so no arguments.
    if args:
        raise MalformedPickleError("bytes() is only accepted without arguments")
    return b""


def _set_builder(kind: type) -> Callable[..., Any]:
    def build(*args: Any) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            return kind(args[0])
        raise MalformedPickleError(f"unexpected {kind.__name__} arguments")
    return build


_TENSOR_BUILDERS: list[_Builder] = []


def _tensor_builder(label: str, fn: Callable[..., Any]) -> _Builder:
    builder = _Builder(label, fn)
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


def _make_allow_list() -> dict[tuple[str, str], Callable[[], Any]]:
    allowed: dict[tuple[str, str], Callable[[], Any]] = {}

    def constant(key: tuple[str, str], value: Any) -> None:
        allowed[key] = lambda: value

    # DCP .metadata: the dataclasses it is made of. Each gets its own Record
    # subclass so the reader can tell them apart by ``kind``.
    for module, name in sorted(_RECORD_CLASSES):
        cls = type(name, (Record,), {"__slots__": (), "kind": name})
        constant((module, name), cls)
    for module in (_DCP_METADATA_MODULE, _OLD_SHARD_METADATA_MODULE):
        for enum_name in ("_MEM_FORMAT_ENCODING", "MEM_FORMAT_ENCODING"):
            constant((module, enum_name), _Builder("memory format", _memory_format_code))
    # StorageMeta.checkpoint_id is whatever path object the saver passed.
    for module in ("pathlib", "pathlib._local"):
        for name, join in (("PosixPath", posixpath.join), ("PurePosixPath", posixpath.join),
                           ("WindowsPath", ntpath.join), ("PureWindowsPath", ntpath.join)):
            constant((module, name), _Builder(name, _path_builder(join)))

    # Shapes, dtypes and layouts: in both formats.
    constant(("torch", "Size"), _Builder("torch.Size", _torch_size))
    for name in _DTYPE_NAMES:
        allowed[("torch", name)] = (lambda n=name: DType(n))
    constant(("torch.serialization", "_get_layout"), _Builder("layout", _layout))
    constant(("torch", "device"), _Builder("torch.device", _device))

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
        constant(("torch._tensor", name), _Builder("retyped tensor", _rebuild_from_type))
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
    constant(("collections", "OrderedDict"), _Builder("OrderedDict", _ordered_dict))
    constant(("_codecs", "encode"), _Builder("bytes", _latin1_encode))
    for module in ("builtins", "__builtin__"):
        constant((module, "bytes"), _Builder("bytes", _empty_bytes))
        constant((module, "set"), _Builder("set", _set_builder(set)))
        constant((module, "frozenset"), _Builder("frozenset", _set_builder(frozenset)))
    return allowed


_ALLOWED = _make_allow_list()

#: Every global a checkpoint pickle may name, as "module.name".
ALLOWED_GLOBALS: frozenset[str] = frozenset(f"{m}.{n}" for m, n in _ALLOWED)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only through the allow-list.

    Every opcode that looks a global up (GLOBAL, STACK_GLOBAL, INST, OBJ's
    class, EXT*) goes through ``find_class``, so nothing outside the list is
    ever imported or called.
    """

    def __init__(self, file: BinaryIO, *, allow_storages: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self._allow_storages = allow_storages
        self.storages: list[StorageRef] = []

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise ForbiddenGlobalError(f"global {module}.{name}")
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        # torch.save: ('storage', StorageType, key, location, numel[, view]).
        if not self._allow_storages:
            raise ForbiddenGlobalError("a persistent id")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise ForbiddenGlobalError(f"persistent id of kind {str(kind)!r:.40}")
        if len(pid) not in (5, 6) or not isinstance(pid[1], StorageType) \
                or not isinstance(pid[2], str) or not isinstance(pid[3], str) \
                or type(pid[4]) is not int or pid[4] < 0:
            raise MalformedPickleError("malformed storage reference")
        ref = StorageRef(pid[1].dtype, pid[2], pid[3], pid[4])
        self.storages.append(ref)
        return ref


def restricted_load(file: BinaryIO, *, allow_storages: bool = False
                    ) -> tuple[Any, list[StorageRef]]:
    """Load one pickle from ``file``; returns the object and the storages it names."""
    unpickler = RestrictedUnpickler(file, allow_storages=allow_storages)
    return unpickler.load(), unpickler.storages
