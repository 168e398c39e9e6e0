"""Bradley-Terry reward model: a causal-LM backbone plus a scalar value head.

The head, ``Dropout(0.1) -> Linear(hidden, 1)``, reads the last layer's hidden state at the last
non-pad token of each sequence; which position that is comes from the attention mask, so left and
right padding give the same scores as scoring each sequence alone.

On disk we use the layout of the released AceCodeRM checkpoints (a Qwen2ForCausalLM subclass):
backbone weights under ``model.``, the head as ``v_head.summary.weight`` / ``v_head.summary.bias``,
all in the same safetensors files. ``RewardModel.from_pretrained`` therefore loads, with one code
path: our own exports, released AceCodeRM checkpoints (their ``lm_head`` is ignored), and plain
causal-LM checkpoints (no head: a fresh one is initialised and logged). A ``reward_model.json``
beside the weights marks a directory as a reward model.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Sequence

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

HEAD_WEIGHT, HEAD_BIAS = "v_head.summary.weight", "v_head.summary.bias"
MARKER_FILE = "reward_model.json"
# Where a head may live in a checkpoint: the weight files themselves (AceCodeRM, ours) or a side
# file (the LLaMA-Factory / TRL convention), whichever has the keys.
_HEAD_FILES = ("model.safetensors.index.json", "model.safetensors", "value_head.safetensors")


def format_for_scoring(tokenizer, question: str, program: str) -> str:
    """The text the RM scores: the chat template with user = question, assistant = program."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; the "
                         "reward model scores chat-formatted (question, program) pairs")
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": program}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def encode_for_scoring(tokenizer, question: str, program: str, max_length: int | None = None) -> list[int]:
    """Token ids of ``format_for_scoring``; too-long inputs lose tokens from the LEFT.

    Left truncation eats the prompt first and keeps the answer whole whenever it fits, and the scored
    position (the last token) is always the true end of the answer. An answer longer than
    ``max_length`` on its own keeps its last ``max_length`` tokens.
    """
    ids = tokenizer(format_for_scoring(tokenizer, question, program), add_special_tokens=False)["input_ids"]
    return ids[-max_length:] if max_length and len(ids) > max_length else ids


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for a list of id lists, padded on ``side``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last 1 in each row of the mask, whatever the padding side."""
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (pos * attention_mask.long()).argmax(dim=1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected), in fp32 whatever the inputs' dtype."""
    return -torch.nn.functional.logsigmoid(chosen.float() - rejected.float()).mean()


class ValueHead(nn.Module):
    """``Dropout -> Linear(hidden, 1)``, named so its weights are ``v_head.summary.*``."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.summary = nn.Linear(hidden_size, 1, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # The head may be kept in fp32 under a bf16 backbone (the scorer does): compute in its dtype.
        return self.summary(self.dropout(hidden).to(self.summary.weight.dtype)).squeeze(-1)


class RewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, dropout: float = 0.1):
        super().__init__()
        self.model = backbone  # attribute name gives the AceCodeRM key prefix "model."
        self.v_head = ValueHead(backbone.config.hidden_size, dropout)
        self.config = backbone.config

    def init_head(self) -> None:
        # Small weights so that initial rewards are near 0 (as OpenRLHF initialises its value head).
        nn.init.normal_(self.v_head.summary.weight, std=1.0 / (self.config.hidden_size + 1))
        nn.init.zeros_(self.v_head.summary.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One fp32 reward per sequence, read at its last non-pad token."""
        # Positions count real tokens only, so a left-padded row sees the positions it would alone.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.v_head(hidden[rows, last_token_index(attention_mask)]).float()

    @torch.no_grad()
    def score(self, batch, tokenizer=None, max_length: int | None = None) -> torch.Tensor:
        """Rewards for texts (needs ``tokenizer``), lists of token ids, or a dict of padded tensors."""
        if isinstance(batch, dict) or hasattr(batch, "keys"):
            ids, mask = batch["input_ids"], batch["attention_mask"]
        else:
            batch = list(batch)
            if batch and isinstance(batch[0], str):
                if tokenizer is None:
                    raise ValueError("score(texts) needs tokenizer=")
                batch = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in batch]
                batch = [s[-max_length:] if max_length else s for s in batch]
            pad_id = (tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None
                      else getattr(self.config, "pad_token_id", None) or 0)
            ids, mask = pad_batch(batch, pad_id)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            return self(ids.to(device), mask.to(device))
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ saving and loading

    @classmethod
    def from_pretrained(cls, path: str, dtype: torch.dtype | None = None, torch_dtype: torch.dtype | None = None,
                        dropout: float | None = None, **kwargs) -> "RewardModel":
        """Load our export, an AceCodeRM-style checkpoint or a plain causal LM (fresh head)."""
        import transformers
        from transformers import AutoModel

        dtype = dtype or torch_dtype
        path = str(path)
        marker = _read_marker(path)
        if dropout is None:
            dropout = float(marker.get("head_dropout", 0.1)) if marker is not None else 0.1
        # transformers prints a table of the keys it skips (lm_head, v_head): expected here, so
        # quiet it and check the one thing that matters ourselves: no backbone weight is missing.
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            backbone, info = AutoModel.from_pretrained(path, dtype=dtype, output_loading_info=True, **kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if info.get("missing_keys"):
            raise ValueError(f"{path}: backbone weights missing from the checkpoint: "
                             f"{sorted(info['missing_keys'])[:8]}")
        model = cls(backbone, dropout=dropout)
        head = _load_head(path)
        if head is None:
            if marker is not None:
                raise ValueError(f"{path}: {MARKER_FILE} says this is a reward model but no {HEAD_WEIGHT} was found")
            model.init_head()
            log.warning("%s has no value head (%s): initialised a fresh one", path, HEAD_WEIGHT)
        else:
            w, b = head
            if w.shape != model.v_head.summary.weight.shape:
                raise ValueError(f"{path}: {HEAD_WEIGHT} has shape {tuple(w.shape)}, expected "
                                 f"{tuple(model.v_head.summary.weight.shape)} (a linear head of hidden size)")
            model.v_head.summary.weight.data.copy_(w)
            model.v_head.summary.bias.data.copy_(b.reshape(1))
            log.info("loaded value head from %s", path)
        param_dtype = next(backbone.parameters()).dtype
        model.v_head.to(param_dtype)
        return model

    def save_pretrained(self, path: str, state_dict: dict | None = None, **kwargs) -> None:
        """Write config + safetensors in the AceCodeRM layout, and the reward-model marker.

        ``state_dict`` (keys ``model.*`` and ``v_head.summary.*``) lets a caller pass weights it
        gathered itself, e.g. from a ZeRO-3 partitioned model.
        """
        os.makedirs(path, exist_ok=True)
        sd = self.state_dict() if state_dict is None else state_dict
        self.model.save_pretrained(path, state_dict=sd, safe_serialization=True, **kwargs)
        marker = {"format": "acecoder-rl reward model", "version": 1, "head": "v_head.summary",
                  "head_dropout": self.v_head.dropout.p, "score_position": "last non-pad token",
                  "scoring_input": "chat template, user = question, assistant = program"}
        with open(os.path.join(path, MARKER_FILE), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2)


def _read_marker(path: str) -> dict | None:
    from transformers.utils import cached_file

    f = cached_file(path, MARKER_FILE, _raise_exceptions_for_missing_entries=False)
    if not f:
        return None
    with open(f, encoding="utf-8") as fh:
        return json.load(fh)


def _load_head(path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight, bias) of the value head from wherever the checkpoint keeps them, or None."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    for name in _HEAD_FILES:
        f = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if not f:
            continue
        if name.endswith(".index.json"):
            with open(f, encoding="utf-8") as fh:
                weight_map = json.load(fh)["weight_map"]
            if HEAD_WEIGHT not in weight_map:
                continue
            files = {k: cached_file(path, weight_map[k]) for k in (HEAD_WEIGHT, HEAD_BIAS)}
        else:
            files = {HEAD_WEIGHT: f, HEAD_BIAS: f}
        tensors = {}
        for key, file in files.items():
            with safe_open(file, framework="pt") as st:
                if key in st.keys():
                    tensors[key] = st.get_tensor(key)
        if HEAD_WEIGHT in tensors:
            if HEAD_BIAS not in tensors:
                raise ValueError(f"{path}: found {HEAD_WEIGHT} but no {HEAD_BIAS}")
            return tensors[HEAD_WEIGHT].float(), tensors[HEAD_BIAS].float()
    return None
