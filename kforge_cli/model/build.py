"""``build_meta_model``: the job's model as meta-device torch modules.

The module tree is ``kforge_cli.manifest``'s description of it, materialized;
the only thing added here is what needs torch: HuggingFace vision towers
rebuilt from a local config. The parameter and buffer lists are read back
from torch (``named_parameters()`` / ``state_dict()``), so they include such
a tower.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from kforge_cli.manifest import ParamInfo, describe_model
from kforge_cli.manifest.tree import count_tensors, gc_paused, has_external
from kforge_cli.model.hf import resolve_hf_encoder
from kforge_cli.model.materialize import materialize
from kforge_cli.model.meta import MetaModel

# Past this many parameter tensors the meta-device build costs seconds per 10,000 tensors
# (about 25 s and 1 GiB for 180,000 on one core) and adds nothing: the manifest lists the same
# names, shapes and flags (tests/unit/test_manifest_parity.py holds them equal), so it stands
# in unless a tower only torch can list (a HuggingFace encoder) is part of the model.
MAX_META_TENSORS = 50_000


def build_meta_model(job: Any) -> MetaModel:
    description = describe_model(job, resolve_encoder=resolve_hf_encoder)
    if count_tensors(description.root) > MAX_META_TENSORS and not has_external(description.root):
        listed = description.manifest()
        return MetaModel(**{f.name: getattr(listed, f.name) for f in dataclasses.fields(listed)})
    with gc_paused():
        module = materialize(description.root)
        parameters, buffers = _listed(module)
    return MetaModel(parameters=parameters, unknown=description.unknown,
                     num_image_tokens=description.num_image_tokens, buffers=buffers,
                     encoder_num_tokens=description.encoder_num_tokens,
                     encoder_feature_dim=description.encoder_feature_dim,
                     frames_per_clip=description.frames_per_clip,
                     cross_attention_after_layers=description.cross_attention_after_layers,
                     checkpoint_wrapped=description.checkpoint_wrapped, module=module)


def _listed(module: nn.Module) -> tuple[list[ParamInfo], list[ParamInfo]]:
    parameters = [ParamInfo(name, tuple(p.shape), p.numel(), not p.requires_grad)
                  for name, p in module.named_parameters()]
    # Persistent buffers are the state_dict entries that are not parameters
    # (a tied weight shows up there under both of its names).
    parameter_names = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    buffers = [ParamInfo(name, tuple(tensor.shape), tensor.numel(), False)
               for name, tensor in module.state_dict(keep_vars=True).items()
               if name not in parameter_names]
    return parameters, buffers
