"""Compact JSON, the way mistral.rs (serde_json) writes it."""
import json
from functools import partial

dumps = partial(json.dumps, separators=(",", ":"), ensure_ascii=False)
