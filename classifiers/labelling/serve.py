"""A minimal OpenAI-compatible chat-completions server over a local causal LM (the same loader as the teacher).

``python -m refinery.classifiers.labelling.serve --model PATH --port 0`` binds 127.0.0.1 (port 0: any free port)
and prints ``READY http://127.0.0.1:PORT/v1`` on stdout once the model is loaded. It serves ``GET /v1/models`` and
``POST /v1/chat/completions`` (messages, max_tokens, temperature 0 only: greedy, logprobs/top_logprobs for the
first generated token). Requests are served one at a time behind a lock (the model is not thread-safe); it is
here so the HTTP teacher is tested against real model output over real HTTP, and as a stand-in server for small
jobs — point the HTTP teacher at vLLM, TGI, llama.cpp or Ollama for real ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from refinery.pipelines.models import DEFAULT_TEACHER


class ChatModel:
    """Greedy chat completion with the first token's top log-probabilities."""

    def __init__(self, model_path: str) -> None:
        from refinery.classifiers.labelling.local import LocalTeacher

        self.name = model_path
        self.teacher = LocalTeacher(model_path, batch_size=1)
        self.teacher.load()  # load now, before READY is printed and before requests arrive on several threads
        self.lock = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        max_tokens = int(body.get("max_tokens") or 16)
        tokenizer = self.teacher.tokenizer
        prompt_string = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        top = int(body.get("top_logprobs") or 1) if body.get("logprobs") else 0
        with self.lock:
            texts, firsts = self.teacher.generate_with_logprobs([prompt_string], max_tokens, top)
        content, logprobs = texts[0], None
        if top:
            first = firsts[0]
            logprobs = {
                "content": [
                    {
                        "token": first[0][0],
                        "logprob": first[0][1],
                        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in first],
                    }
                ]
            }
        prompt_tokens = len(tokenizer(prompt_string, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.name),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt_tokens},
        }


def handler_for(model: ChatModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise
            return

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model.name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if not isinstance(body.get("messages"), list):
                    raise ValueError("messages must be a list")
            except ValueError as error:
                self._send(400, {"error": {"message": str(error)}})
                return
            try:
                self._send(200, model.complete(body))
            except Exception as error:
                self._send(500, {"error": {"message": f"{type(error).__name__}: {error}"}})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_TEACHER, help="local path or package:DIST/file (a .gguf or folder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on the READY line)")
    args = parser.parse_args(argv)
    model = ChatModel(args.model)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(model))
    print(f"READY http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
