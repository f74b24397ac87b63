"""semcomp: store and send the meaning of text in a few bytes a sentence."""
import os

# FAISS's k-means and our small matrix products are many tiny BLAS calls; OpenBLAS's spinning
# worker threads made OPQ/RQ training 3x slower on 2 cores (measured), so one BLAS thread by default.
# FAISS's OpenMP team likewise: with a second busy process, its barriers made OPQ training 2-3x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import faiss  # noqa: E402

faiss.omp_set_num_threads(int(os.environ.get("SEMCOMP_FAISS_THREADS", "1")))

from .codec import Codec  # noqa: E402
from .config import load_config  # noqa: E402

__all__ = ["Codec", "load_config"]
__version__ = "0.1.0"
