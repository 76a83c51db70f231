"""A stand-in engine: a byte-level tokenizer and a canned reply streamed through real RequestHandles."""
import threading
import time

from mistralrs.runtime.handle import RequestHandle
from mistralrs.runtime.outputs import ChoiceDelta, RequestDone, RequestError, RequestUsage, TokenLogprob
from mistralrs.runtime.request import GenerationRequest

BOS, EOS, OFFSET = 1, 2, 3
ROLES = {"system", "user", "assistant", "tool"}


class FakeTokenizer:
    """One token per UTF-8 byte, shifted past the special tokens."""

    bos_token_id = BOS
    eos_token_ids = {EOS}
    vocab_size = 256 + OFFSET

    def __init__(self):
        self.template_calls = []

    def encode(self, text, add_special_tokens=True):
        ids = [b + OFFSET for b in text.encode()]
        return [BOS] + ids if add_special_tokens else ids

    def decode(self, ids, skip_special_tokens=True):
        text = bytes(i - OFFSET for i in ids if i >= OFFSET).decode("utf-8", "replace")
        return text if skip_special_tokens or not ids or ids[0] != BOS else "<s>" + text

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=True, **template_kwargs):
        self.template_calls.append({"messages": messages, "tools": tools, **template_kwargs})
        if any(m["role"] not in ROLES for m in messages):
            raise ValueError("Conversation roles must be system, user, assistant or tool")
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class FakeEngine:
    """Replies `reply` (one character per token) in every choice; knobs make it slow or fail."""

    model_name = "fake-model"

    def __init__(self, reply="Hello world!", max_context=256, token_delay_s=0.0, error_after=None,
                 submit_error=None):
        self.tokenizer = FakeTokenizer()
        self.max_context = max_context
        self.info = {"artifact": "/tmp/fake.onnx", "backend": "onnxruntime", "target": "cpu", "isq": "Q4K",
                     "max_batch": 16}
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.error_after = error_after
        self.submit_error = submit_error
        self.requests: list[GenerationRequest] = []
        self.cancelled: list[str] = []
        self.is_shut_down = False

    def submit(self, request):
        if self.submit_error is not None:
            raise self.submit_error
        self.requests.append(request)
        handle = RequestHandle(f"fake-{len(self.requests)}", self.cancelled.append)
        threading.Thread(target=self._generate, args=(request, handle), daemon=True).start()
        return handle

    def stats(self):
        return {"running": 0, "waiting": 0, "requests": len(self.requests), "cancelled": len(self.cancelled)}

    def shutdown(self):
        self.is_shut_down = True
        print("fake engine shut down", flush=True)

    def _generate(self, request, handle):
        text, finish_reason = self._output(request)
        if not text:
            for index in range(request.n):
                handle.push(ChoiceDelta(index, "", [], [], finish_reason))
        for step, char in enumerate(text):
            if handle.request_id in self.cancelled:
                return
            if step == self.error_after:
                handle.push(RequestError("fake engine failure"))
                return
            time.sleep(self.token_delay_s)
            last = step == len(text) - 1
            for index in range(request.n):
                handle.push(ChoiceDelta(index, char, [ord(char) + OFFSET], _logprobs(char, request),
                                        finish_reason if last else None))
        handle.push(RequestDone(RequestUsage(len(request.prompt_token_ids), len(text) * request.n, 0.01, 0.02)))

    def _output(self, request):
        text, finish_reason = self.reply, "stop"
        for stop in request.stopping.stop_strings:
            text = text.split(stop)[0]
        if request.stopping.max_tokens is not None and request.stopping.max_tokens < len(text):
            text, finish_reason = text[:request.stopping.max_tokens], "length"
        return text, finish_reason


def _logprobs(char, request):
    if not request.sampling.logprobs:
        return []
    alternatives = [_entry(char, -0.25)] + [_entry(c, -3.0 - i) for i, c in enumerate("xyzw")]
    return [TokenLogprob(ord(char) + OFFSET, char, -0.25, list(char.encode()),
                         alternatives[:request.sampling.top_logprobs])]


def _entry(char, logprob):
    return TokenLogprob(ord(char) + OFFSET, char, logprob, list(char.encode()))
