"""Byte-level BPE tokenizers trained on each toy model's own corpus, with their own chat template.

Byte-level: any text (a teacher's words in the student's vocabulary) encodes without unknown
tokens. ``trim_offsets`` keeps a token's leading space out of its character span, so offsets
point at the word::

    "He buys 3"   tokens  "He" | " buys" | " 3"
                  offsets (0,2)  (3,7)     (8,9)      <- the space before each word is not counted

The wrapped ``PreTrainedTokenizerFast`` knows its bos/eos/pad tokens and chat template and goes
through ``save_pretrained`` / ``rdpt.models.load_tokenizer`` like any hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizerSpec:
    eos: str
    pad: str
    bos: str | None  # None: the model has no BOS (the template writes none, none is added)
    extra_special: tuple[str, ...]  # role markers of the chat template
    chat_template: str


# Teacher: role markers, a BOS written by the template (and added by the tokenizer too;
# rdpt.models.encode_prompt keeps exactly one).
TEACHER_TOKENIZER = TokenizerSpec(
    eos="<|eos|>",
    pad="<|pad|>",
    bos="<|bos|>",
    extra_special=("<|user|>", "<|assistant|>"),
    chat_template=(
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
        "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}\n"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
)

# Student: plain-text roles, no BOS.
STUDENT_TOKENIZER = TokenizerSpec(
    eos="</s>",
    pad="<pad>",
    bos=None,
    extra_special=(),
    chat_template=(
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}Question: {{ message['content'] }}\n"
        "{% elif message['role'] == 'assistant' %}Answer:\n{{ message['content'] }}{{ eos_token }}\n"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}Answer:\n{% endif %}"
    ),
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, spec: TokenizerSpec, model_max_length: int):
    """A byte-level BPE of at most ``vocab_size`` tokens (fewer if the corpus has few merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = [t for t in (spec.bos, spec.eos, spec.pad) if t is not None] + list(spec.extra_special)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    post = [processors.ByteLevel(trim_offsets=True)]
    if spec.bos is not None:
        bos_id = tok.token_to_id(spec.bos)
        post.append(processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A $B", special_tokens=[(spec.bos, bos_id)]))
    tok.post_processor = processors.Sequence(post)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        additional_special_tokens=list(spec.extra_special) or None,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = spec.chat_template
    return wrapped
