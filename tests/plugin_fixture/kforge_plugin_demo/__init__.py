"""Example kforge plugin: what a third-party package adds through ``kforge_cli.plugins``.

``register(registry)`` is the entry point; kforge calls it once, the first time
it meets a name its built-in registry does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

DISTRIBUTION = "kforge-plugin-demo"


def register(registry) -> None:
    # Imported here, not at module level: kforge imports this module only when
    # it needs a plugin name, and by then its config package is fully loaded.
    from kforge_cli.config.fields import Checker, is_number, setting
    from kforge_cli.config.vlm import ARCH_MODULE_ALIASES, VLMConfig, module_patterns_for

    ARCH_MODULE_ALIASES["qformer"] = {"queries": ["adapter.queries", "adapter.queries.*"]}

    @registry.register_vlm_config("qformer")
    @dataclass
    class QFormerConfig(VLMConfig):
        """Q-Former: learned queries cross-attend to the image, only they enter the residual stream."""

        ARCH_FIELDS: ClassVar[tuple[str, ...]] = ("qformer_queries",)

        arch: str = setting("qformer", "VLM architecture; selects the config subclass", registry="vlm_config")
        qformer_queries: int = setting(32, "learned query tokens that summarise each image", unit="tokens")
        module_patterns: dict[str, list[str]] = setting(
            factory=lambda: module_patterns_for("qformer"),
            doc="freeze alias -> fnmatch patterns over parameter names")

        def residual_stream_image_tokens(self, num_tokens: int) -> int:
            return self.qformer_queries

        def rules(self, c: Checker) -> None:
            super().rules(c)
            if is_number(self.qformer_queries) and self.qformer_queries <= 0:
                c.error("KF103", "qformer_queries", "vlm.qformer_queries must be positive",
                        "use 32 learned queries")

    registry.register_component("adapter", "qformer_pool", "learned-query pooling over patch features",
                                origin=DISTRIBUTION)
    registry.register_component("vision_encoder", "dinov2", "DINOv2 ViT (self-supervised)", origin=DISTRIBUTION)
    registry.register_component("optimizer", "adafactor", "Adafactor: factored second moments",
                                origin=DISTRIBUTION)
