"""The restricted unpickler on its own: what it admits and what it turns things into."""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from ckpt_factory import pickle_globals

from kforge_cli.checkpoint.allow_list import (
    ALLOWED_GLOBALS,
    DType,
    ForbiddenGlobalError,
    MalformedPickleError,
    PickledDict,
    Record,
    TensorStub,
)
from kforge_cli.checkpoint.safe_pickle import restricted_load


def _load(data: bytes, storages: bool = False):
    return restricted_load(io.BytesIO(data), allow_storages=storages)[0]


def test_dcp_metadata_of_torch_2_13_uses_only_allowed_globals(tmp_path: Path) -> None:
    from ckpt_factory import save_kf_step

    step_dir = save_kf_step(tmp_path / "run", 1)
    used = pickle_globals((step_dir / ".metadata").read_bytes())
    assert used <= ALLOWED_GLOBALS
    assert {"torch.distributed.checkpoint.metadata.Metadata", "torch.Size",
            "torch.distributed.checkpoint.filesystem._StorageInfo"} <= used


def test_metadata_records_keep_fields(tmp_path: Path) -> None:
    from ckpt_factory import save_kf_step

    step_dir = save_kf_step(tmp_path / "run", 1)
    metadata = _load((step_dir / ".metadata").read_bytes())
    assert isinstance(metadata, Record) and metadata.kind == "Metadata"
    item = metadata.fields["state_dict_metadata"]["model.transformer.norm.weight"]
    assert item.kind == "TensorStorageMetadata" and item.fields["size"] == (8,)
    properties = item.fields["properties"]
    assert properties.kind == "TensorProperties"
    assert isinstance(properties.state[0], DType) and properties.state[0].name == "float32"


def test_torch_save_pickle_yields_stubs() -> None:
    buf = io.BytesIO()
    torch.save(OrderedDict(w=torch.zeros(3, 2, dtype=torch.bfloat16)), buf)
    import zipfile

    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        obj, storages = restricted_load(io.BytesIO(archive.read(name)), allow_storages=True)
    assert isinstance(obj, PickledDict)
    assert isinstance(obj["w"], TensorStub)
    assert (obj["w"].shape, obj["w"].dtype) == ((3, 2), "bfloat16")
    assert [(s.dtype, s.key, s.location, s.numel) for s in storages] == [("bfloat16", "0", "cpu", 6)]


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"),
    ("subprocess", "Popen"), ("torch", "load"), ("torch.serialization", "load"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"), ("numpy", "dtype"),
    ("collections", "OrderedDict.fromkeys"), ("torch", "Tensor.__reduce_ex__"),
])
def test_forbidden_globals(module: str, name: str) -> None:
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."
    with pytest.raises(ForbiddenGlobalError) as err:
        _load(data)
    assert err.value.what == f"global {module}.{name}"


def test_protocol_4_stack_global_goes_through_the_allow_list() -> None:
    data = pickle.dumps(os.system, protocol=4)
    with pytest.raises(ForbiddenGlobalError):
        _load(data)


def test_extension_registry_cannot_smuggle_a_global() -> None:
    import copyreg

    module = os.getcwd.__module__
    copyreg.add_extension(module, "getcwd", 0xF00D)
    try:
        data = pickle.dumps(os.getcwd, protocol=2)
        assert module.encode() not in data  # an EXT2 opcode names it by number
        with pytest.raises(ForbiddenGlobalError, match=f"global {module}.getcwd"):
            _load(data)
    finally:
        copyreg.remove_extension(module, "getcwd", 0xF00D)


def test_persistent_ids_only_where_storages_are_expected() -> None:
    class _Pid(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "x") if obj == "s" else None

    buf = io.BytesIO()
    _Pid(buf, protocol=2).dump(["s"])
    with pytest.raises(ForbiddenGlobalError, match="a persistent id"):
        _load(buf.getvalue())
    with pytest.raises(MalformedPickleError, match="malformed storage reference"):
        _load(buf.getvalue(), storages=True)


def test_allowed_builtins_refuse_dangerous_arguments() -> None:
    with pytest.raises(MalformedPickleError):
        _load(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-7\x86R.")
    with pytest.raises(MalformedPickleError):
        _load(b"\x80\x02c__builtin__\nset\nX\x03\x00\x00\x00abc\x85R.")
    assert _load(pickle.dumps({b"\x00\xff": {1, 2}, b"": frozenset()}, protocol=2)) == \
        {b"\x00\xff": {1, 2}, b"": frozenset()}


def test_stand_in_classes_reject_pickled_state() -> None:
    for attack in (
        b"\x80\x02ctorch\nfloat32\n}X\x01\x00\x00\x00aK\x01sb.",
        b"\x80\x02ctorch\nFloatStorage\n}X\x01\x00\x00\x00aK\x01sb.",
        b"\x80\x02ctorch.nn.parameter\nParameter\n}X\x01\x00\x00\x00aK\x01sb.",
    ):
        with pytest.raises(MalformedPickleError, match="does not take pickled state"):
            _load(attack)
