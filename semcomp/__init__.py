"""semcomp: store and send the meaning of text in a few bytes a sentence."""
import os

# FAISS's k-means makes many tiny BLAS calls; OpenBLAS's spinning worker threads made OPQ
# training 3x slower on 2 busy cores (measured), so one BLAS thread unless the user says otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .config import load_config  # noqa: E402

__all__ = ["Codec", "load_config"]


def __getattr__(name: str):  # Codec pulls in torch (1.4 s): only when asked for, not by semcomp.data
    if name == "Codec":
        from .codec import Codec

        return Codec
    raise AttributeError(f"module 'semcomp' has no attribute {name!r}")
__version__ = "0.1.0"
