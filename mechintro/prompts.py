"""Prompts and injection windows.

A prompt is rendered once with the model's chat template into text, then tokenized with character
offsets, so that an injection window can be given in the prompt's own words: "from the double
newline before 'Trial 1'", "on the tokens of this sentence", "everything before turn 2". A token
belongs to a window when its characters overlap the window's character range; the result is a
boolean mask over the prompt's tokens, which is what the engine and the run dataset store
(``inject_mask``). Injection positions are therefore fixed per trial, independent of batching and
left padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mechintro.errors import MechintroError


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and its tokens. ``offsets[i]`` is token i's ``(start, end)`` in
    ``text``."""

    text: str
    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def render_chat(
    tokenizer: Any, messages: list[dict[str, str]], *, continue_final: bool = False
) -> str:
    """Render ``messages`` with the tokenizer's chat template.

    With ``continue_final`` the last (assistant) message is left open, so the model continues it
    (a prefill such as "The answer is"); otherwise the generation prompt is appended.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise MechintroError(
            f"tokenizer of {getattr(tokenizer, 'name_or_path', 'this model')} has no chat "
            "template: use an instruction-tuned model or set tokenizer.chat_template"
        )
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
    )


def message_window(tokenizer: Any, messages: list[dict[str, str]], first: int, last: int) -> Window:
    """The window over ``messages[first:last]`` of a rendered conversation, their template tokens
    included (vgel's steering of whole messages while they fill the KV cache)."""

    def prefix(k: int) -> str:
        if k == 0:
            return ""
        return tokenizer.apply_chat_template(
            messages[:k], tokenize=False, add_generation_prompt=False
        )

    full = render_chat(tokenizer, messages, continue_final=messages[-1]["role"] == "assistant")
    lo, hi = prefix(first), prefix(last)
    if not (full.startswith(hi) and hi.startswith(lo)):
        raise MechintroError(
            "this chat template does not render earlier turns as a "
            "prefix of later ones: pass a token mask (Window.tokens)"
        )
    return Window(start=len(lo), end=len(hi))


def tokenize(tokenizer: Any, text: str, *, max_len: int | None = None) -> Prompt:
    """Tokenize rendered text (its special tokens are already in it) with character offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = tuple(int(i) for i in enc["input_ids"])
    if max_len is not None and len(ids) > max_len:
        raise MechintroError(
            f"prompt is {len(ids)} tokens, longer than the model's context of {max_len}: "
            "shorten the prompt or its document"
        )
    return Prompt(
        text=text, input_ids=ids, offsets=tuple((int(a), int(b)) for a, b in enc["offset_mapping"])
    )


@dataclass(frozen=True, kw_only=True)
class Window:
    """Where an injection applies.

    ``start``/``end`` are marker strings (first occurrence; ``end`` is searched after ``start``)
    or character offsets into the rendered prompt. Tokens overlapping ``[start, end)`` are in the
    window; ``None`` means the first / last prompt token. ``end_after_marker`` makes a text
    ``end`` inclusive (the window covers the marker). ``start_before`` starts the window one
    token earlier: on the last token before ``start`` (the open Lindsey replications steer from
    the token before "Trial {n}"). ``generated`` keeps injecting on every
    generated token. ``mask`` gives the prompt tokens explicitly and overrides the rest.

    Use the constructors: :meth:`from_marker`, :meth:`span`, :meth:`before`, :meth:`whole`,
    :meth:`tokens`.
    """

    start: str | int | None = None
    end: str | int | None = None
    end_after_marker: bool = False
    generated: bool = False
    mask: tuple[bool, ...] | None = None
    start_before: bool = False

    @classmethod
    def from_marker(
        cls, marker: str, *, generated: bool = False, token_before: bool = False
    ) -> Window:
        """From the first token of ``marker`` (``token_before``: from the last token before
        it) to the end of the prompt (and beyond, if generated)."""
        return cls(start=marker, generated=generated, start_before=token_before)

    @classmethod
    def span(cls, text: str) -> Window:
        """Exactly the tokens of ``text`` (e.g. a sentence inside the prompt)."""
        return cls(start=text, end=text, end_after_marker=True)

    @classmethod
    def before(cls, marker: str | int, *, start: str | int | None = None) -> Window:
        """Prompt-only steering: everything before ``marker`` (the earlier turns that fill the KV
        cache); the rest of the prompt and the answer are unsteered."""
        return cls(start=start, end=marker)

    @classmethod
    def whole(cls, *, generated: bool = False) -> Window:
        """Every prompt token (and every generated token, if ``generated``)."""
        return cls(generated=generated)

    @classmethod
    def tokens(cls, mask: list[bool] | tuple[bool, ...], *, generated: bool = False) -> Window:
        """An explicit mask over the prompt's tokens."""
        return cls(mask=tuple(bool(m) for m in mask), generated=generated)

    def resolve(self, prompt: Prompt) -> tuple[bool, ...]:
        """The window as a mask over ``prompt``'s tokens."""
        if self.mask is not None:
            if len(self.mask) != len(prompt):
                raise MechintroError(
                    f"window mask has {len(self.mask)} entries but the prompt has {len(prompt)} "
                    "tokens: build the mask from the tokenized prompt"
                )
            return self.mask
        lo = _char(prompt.text, self.start, 0, after=False, default=0)
        hi = _char(prompt.text, self.end, lo, after=self.end_after_marker, default=len(prompt.text))
        if hi <= lo:
            raise MechintroError(
                f"injection window is empty (characters {lo}..{hi}): check its markers"
            )
        mask = tuple(a < hi and b > lo and b > a for a, b in prompt.offsets)
        if not any(mask):
            raise MechintroError("injection window covers no token: check its markers")
        if self.start_before:
            first = mask.index(True)
            if first == 0:
                raise MechintroError(
                    "the injection window starts on the first token, so there is no token "
                    "before it: start the window at a later marker"
                )
            mask = (*mask[: first - 1], True, *mask[first:])
        return mask


def _char(
    text: str, where: str | int | None, search_from: int, *, after: bool, default: int
) -> int:
    if where is None:
        return default
    if isinstance(where, int):
        if not 0 <= where <= len(text):
            raise MechintroError(f"window offset {where} is outside the prompt (0..{len(text)})")
        return where
    idx = text.find(where, search_from)
    if idx < 0:
        shown = where.replace("\n", "\\n")
        raise MechintroError(
            f"marker '{shown}' does not occur in the prompt: "
            "pass text that the rendered prompt contains"
        )
    return idx + len(where) if after else idx
