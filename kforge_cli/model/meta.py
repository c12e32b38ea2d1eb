"""``MetaModel``: a job's parameter manifest together with its meta-device module.

Kept free of torch so callers can read a ``MetaModel`` without paying for the
torch import.
"""

from __future__ import annotations

from typing import Any

from kforge_cli.manifest import Manifest
from kforge_cli.records import record


@record
class MetaModel(Manifest):
    # The torch.nn.Module on the meta device (typed loosely to keep this module torch-free).
    module: Any = None
