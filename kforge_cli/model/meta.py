"""``MetaModel``: a job's parameter manifest together with its meta-device module.

Kept free of torch so callers can read a ``MetaModel`` without paying for the
torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kforge_cli.manifest import Manifest


@dataclass
class MetaModel(Manifest):
    # The torch.nn.Module on the meta device (typed loosely to keep this module torch-free).
    module: Any = None
