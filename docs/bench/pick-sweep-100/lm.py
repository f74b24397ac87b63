import numpy as np
from llama_cpp import Llama

class TokenLM:
    """Sum of token NLL and token count of each text (BOS prepended), reusing the KV prefix."""
    def __init__(self, path, threads=2):
        self.llm = Llama(model_path=str(path), n_ctx=256, logits_all=True, n_threads=threads, verbose=False)
        self.cache = {}
    def nll(self, texts):
        out = []
        for s in texts:
            if s in self.cache:
                out.append(self.cache[s]); continue
            toks = self.llm.tokenize(s.encode("utf-8"), add_bos=True)[:256]
            if len(toks) < 2:
                self.cache[s] = (0.0, 0); out.append((0.0, 0)); continue
            prev = self.llm.input_ids[: self.llm.n_tokens]
            c = 0
            while c < min(len(prev), len(toks) - 1) and prev[c] == toks[c]:
                c += 1
            self.llm.n_tokens = c
            self.llm.eval(toks[c:])
            lg = np.asarray(self.llm.scores[: len(toks) - 1], dtype=np.float64)
            m = lg.max(1, keepdims=True)
            lse = (m[:, 0] + np.log(np.exp(lg - m).sum(1)))
            nll = float((lse - lg[np.arange(len(toks) - 1), toks[1:]]).sum())
            self.cache[s] = (nll, len(toks) - 1); out.append(self.cache[s])
        return out
