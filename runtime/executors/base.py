"""What the engine needs from a compiled model, whatever the backend: one forward over KV-cache slots."""
from abc import ABC, abstractmethod

import numpy as np


class ModelExecutor(ABC):
    """Owns the KV cache: `max_slots` rows of `max_seq_len` positions each.

    `forward` runs B consecutive slots starting at `first_slot`; row b appends token_ids[b] (S tokens,
    the same S for every row) after past_lengths[b] cached positions, and returns the logits of each
    row's last token, [B, V].
    """

    max_slots: int
    max_seq_len: int

    @abstractmethod
    def forward(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray: ...

    # True where single-token forwards (decode steps) run other kernels than prompts do: the last position of a prompt
    # whose prefix was shared then goes through `forward_prompt_end`, so that its first token does not depend on
    # whether the prefix was shared
    decodes_differently = False

    def forward_prompt_end(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        """`forward` of one token a row, computed as a prompt's positions are."""
        return self.forward(first_slot, token_ids, past_lengths)

    def populate_step(self) -> bool:
        """Do a bounded piece of work that makes later forwards cheaper (faulting the KV cache in); the engine calls
        it while it has nothing else to do. False once there is none left."""
        return False

    @abstractmethod
    def copy_slot(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` cached positions of slot `src` into slot `dst`."""
