"""Build semcomp artifacts from a corpus, or compress your own text with a trained model.

    python pipeline.py                                  # WikiText-2 via the Hugging Face hub
    python pipeline.py --set data_dir=../shared/data/wikitext-2-raw   # a local copy, offline
    python pipeline.py --input my_corpus/               # your own .txt/.md files
    python pipeline.py --compress notes.txt -o notes.scz
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

# FAISS's k-means makes many tiny BLAS calls; OpenBLAS's spinning worker threads made OPQ training
# 3x slower on 2 busy cores (measured): one BLAS thread unless the user says otherwise. Set before
# numpy loads OpenBLAS, and here rather than in the library, which must not change its importer's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from semcomp import cli  # noqa: E402

log = logging.getLogger("semcomp")


def check_output(src: Path, out: Path, force: bool) -> None:
    """Never overwrite the user's text: `-o` may replace only an earlier codes file (or, with
    --force, any file); never the input itself, with or without it."""
    from semcomp.codes import MAGIC

    if out.is_dir():
        raise cli.UsageError(f"-o {out} is a folder: name a codes file")
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise cli.UsageError(f"-o {out} is the input: the codes would replace your text; name another file")
    if out.exists() and not force:
        with open(out, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise cli.UsageError(f"-o {out} exists and is not a semcomp codes file: pass --force to replace it")


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--input", help="plain-text file or folder to train on instead of the config's sources; "
                                   "retrains and replaces the model in the artifacts folder (codes files of the "
                                   "previous model stop decoding)")
    p.add_argument("--compress", metavar="TEXT", help="compress this text file/folder with the trained model")
    p.add_argument("-o", "--output", help="codes file to write with --compress (default: TEXT.scz)")
    p.add_argument("--force", action="store_true",
                   help="with --compress: let -o replace a file that is not a semcomp codes file")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: Ray Data (a local Ray, or --set ray_address=...) "
                        "embeds the training sentences, or with --compress embeds and encodes and -o is a "
                        "folder of codes shards (pip install -r requirements-ray.txt)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    if args.compress:
        from semcomp import Codec

        src = Path(args.compress)  # notes.txt -> notes.scz; a folder -> its name + .scz, beside it
        out = args.output or str(src.with_suffix(".scz") if src.is_file() and src.suffix != ".scz"
                                 else src.resolve().with_name(src.resolve().name + ".scz"))
        if args.engine == "local":
            check_output(src, Path(out), args.force)
        if args.engine == "ray":
            from semcomp.engine_ray import compress_ray, require_ray

            require_ray()  # one line naming the install, before any work
            stats = compress_ray(Codec.load(cfg["artifacts_dir"], cfg), args.compress, out, cfg)  # out: a folder
        else:
            stats = Codec.load(cfg["artifacts_dir"], cfg).compress_file(args.compress, out, cfg["show_progress_bar"])
        log.info("%d sentences -> %s: %d bytes (UTF-8 text: %d bytes)", stats["sentences"], out,
                 stats["bytes"], stats["utf8_bytes"])
        return 0
    from semcomp.build import build

    if args.engine == "ray":
        from semcomp.engine_ray import require_ray

        require_ray()
    m = build(cfg, args.input, engine=args.engine)
    log.info("held-out decoded cosine %.4f at %d bits/sentence; codebook use min %.0f%%",
             m["test_decoded_cosine"] or float("nan"), m["bits_per_sentence"],
             100 * min(c["used"] for c in m["codebook_usage"]))
    log.info("seconds: %s", json.dumps(m["seconds"]))
    log.info("artifacts in %s/", cfg["artifacts_dir"])
    return 0


if __name__ == "__main__":
    cli.main(run)
