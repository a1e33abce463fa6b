"""Test doubles that run for real: a loopback HTTP server answering like translate.google.com/m, and a tiny
MarianMT model + SentencePiece tokenizer built from scratch (random weights) in a temp folder."""
from __future__ import annotations

import html
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def fake_translate(text: str, sl: str, tl: str) -> str:
    """Deterministic stand-in: EN→X tags the text, X→EN removes the tag and rephrases a little."""
    if tl != "en":
        return f"{text} <{tl}>"
    base = text.rsplit(" <", 1)[0]
    return f"{base} ({sl} back)"


class GoogleLikeServer:
    """GET /m?sl=..&tl=..&q=.. → HTML with <div class="result-container">. `script` holds actions for the next
    requests: "429", "503", "hang" (sleep `hang_s`), "block" (wait until `release` is set). Counts everything."""

    def __init__(self, hang_s: float = 3.0, delay_s: float = 0.0):
        self.script: list[str] = []
        self.hang_s = hang_s
        self.delay_s = delay_s
        self.requests: Counter = Counter()  # (sl, tl, q) → requests received
        self.answered: Counter = Counter()  # (sl, tl, q) → 200 answers (counted when decided, before sending)
        self.fail_texts: set[str] = set()  # answered with HTTP 404 (a per-text failure, not retried)
        self.block_after: int | None = None  # block the request after this many 200 answers
        self.blocked = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                q = parse_qs(urlparse(self.path).query)
                key = (q["sl"][0], q["tl"][0], q["q"][0])
                with server._lock:
                    server.requests[key] += 1
                    action = server.script.pop(0) if server.script else "ok"
                    if key[2] in server.fail_texts:
                        action = "404"
                    if server.block_after is not None and sum(server.answered.values()) >= server.block_after:
                        action = "block"
                    if action == "ok":  # counted here, under the lock that decides "block": counted after the
                        server.answered[key] += 1  # write, a slow thread could let one request too many through
                if action == "block":
                    server.blocked.set()
                    server.release.wait(30)
                    return
                if action == "hang":
                    server.release.wait(server.hang_s)  # as long as a hang, but it ends when the server closes
                    return
                if action in ("404", "429", "503"):
                    self.send_response(int(action))
                    self.end_headers()
                    return
                time.sleep(server.delay_s)
                body = (f'<html><body><div class="result-container">'
                        f'{html.escape(fake_translate(key[2], key[0], key[1]))}</div></body></html>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/m"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "GoogleLikeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


SENTENCES = [
    "a dog barks in the distance", "birds are chirping in the forest", "rain falls on a metal roof",
    "people talk while cars pass by", "ein hund bellt in der ferne", "der regen fällt auf ein dach",
    "un chien aboie au loin", "la pluie tombe sur un toit", "water runs from a faucet",
]


def build_tiny_marian(out: Path, positions: int = 64) -> Path:
    """A MarianMT model with d_model 16 and a 64-piece SentencePiece vocabulary trained on a few sentences.

    `positions`: its position table, which also bounds a translation's length (random weights rarely stop
    earlier), so a small one makes a fast model for tests that translate many texts."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out.mkdir(parents=True, exist_ok=True)
    for side in ("source", "target"):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(SENTENCES * 4), model_prefix=str(out / side), vocab_size=64,
            model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            hard_vocab_limit=False, minloglevel=2)
        (out / f"{side}.model").rename(out / f"{side}.spm")
    sp = spm.SentencePieceProcessor(model_file=str(out / "source.spm"))
    (out / "vocab.json").write_text(json.dumps({sp.id_to_piece(i): i for i in range(sp.get_piece_size())}))
    tok = MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"))
    cfg = MarianConfig(vocab_size=sp.get_piece_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                       max_position_embeddings=positions, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id, forced_eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = MarianMTModel(cfg)
    model.generation_config.min_new_tokens = 2  # random weights: never an empty translation
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
