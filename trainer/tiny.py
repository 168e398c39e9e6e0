"""Tiny models built from a config, for tests and the CPU demo (nothing is downloaded).

``build_tokenizer`` trains a byte-level BPE tokenizer on a small corpus of Python (or any text you
give it), with Qwen-style chat tokens and a chat template, and saves it as a normal Hugging Face
tokenizer directory. ``build_tiny_qwen2`` saves a randomly initialised Qwen2ForCausalLM beside it, so
``AutoTokenizer.from_pretrained(path)`` and ``AutoModelForCausalLM.from_pretrained(path)`` load both
exactly as they would load a hub checkpoint.
"""
from __future__ import annotations

import os
from typing import Iterable

IM_START, IM_END, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"

# Qwen2.5's template, reduced to what we use: system/user/assistant turns and a generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if not (loop.last and message['role'] == 'assistant' and not add_generation_prompt) %}"
    "{{ '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_DEFAULT_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def is_even(n):\n    return n % 2 == 0\n",
    "assert add(1, 2) == 3\nassert is_even(4) is True\n",
    "for i in range(10):\n    print(i * i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "Write a Python function that returns the maximum of a list.\n",
    "```python\nimport math\nprint(math.sqrt(16))\n```\n",
]


def build_tokenizer(save_dir: str, corpus: Iterable[str] | None = None, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer and save it with special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, IM_START, IM_END, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(corpus) if corpus is not None else _DEFAULT_CORPUS
    tok.train_from_iterator(texts * (1 if len(texts) > 50 else 20), trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD,
                                 additional_special_tokens=[IM_START, EOS])
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "left"
    os.makedirs(save_dir, exist_ok=True)
    hf.save_pretrained(save_dir)
    return hf


def tiny_qwen2_config(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                      max_positions: int = 1024, pad_token_id: int | None = None,
                      eos_token_id: int | None = None):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=max_positions, tie_word_embeddings=True,
                       pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=None,
                       torch_dtype="float32")


def build_tiny_qwen2(save_dir: str, tokenizer=None, seed: int = 0, **config_kwargs):
    """Save a randomly initialised Qwen2ForCausalLM (and the tokenizer, if given) to save_dir."""
    import torch
    from transformers import Qwen2ForCausalLM

    if tokenizer is None:
        tokenizer = build_tokenizer(save_dir)
    cfg = tiny_qwen2_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, **config_kwargs)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    os.makedirs(save_dir, exist_ok=True)
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return model
