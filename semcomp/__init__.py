"""semcomp: store and send the meaning of text in a few bytes a sentence."""
from .config import load_config

__version__ = "0.1.0"
__all__ = ["Codec", "load_config"]


def __getattr__(name: str):  # Codec pulls in torch (1.4 s): only when asked for, not by semcomp.data
    if name == "Codec":
        from .codec import Codec

        return Codec
    raise AttributeError(f"module 'semcomp' has no attribute {name!r}")
