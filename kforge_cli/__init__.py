"""kforge: check KempnerForge training-job configs before they reach a cluster."""

__version__ = "0.2.0"
