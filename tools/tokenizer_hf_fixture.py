#!/usr/bin/env python3
"""Writes crates/tokenizer/tests/fixtures/hf_tokenizer.json (a byte-level BPE trained by Hugging Face
`tokenizers`, vocab 400, specials <|endoftext|> and <|end of text|>) and hf_expected.json (texts and
the ids HF gives them), so that `cargo test` checks, without Python, that ferrolm loads a real HF
tokenizer.json and encodes like HF.

  python3 tools/tokenizer_hf_fixture.py
"""
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "tokenizer", "tests", "fixtures")

LINES = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "\"I'll go,\" she said. \"You're not coming? We've got 3 apples and 12.5 pears!\"",
    "The dog's ball rolled   under the   table;  they'd never find it again...",
    "Café, naïve, résumé — and 東京 in 2024: ½ of ①②③; tabs\there\tand\tthere.",
    "Numbers: 1234567890 0.5 -17 +42 3x4 4th 1st 2nd; emoji 🙂🙃 and ZWJ 👩‍💻.",
]


def corpus():
    docs = []
    for i in range(200):
        doc = "\n".join(LINES[(i + k) % len(LINES)] for k in range(1 + i % 4))
        docs.append(doc)
    return "<|endoftext|>\n".join(docs)


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|end of text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([corpus()], trainer)
    tok.save(os.path.join(OUT, "hf_tokenizer.json"))
    texts = LINES + [
        "Hello, world! It's 2025 and they've   gone.\n\n\nBye<|endoftext|>next",
        "<|endoftext|><|endoftext|> x <|endoftext",
        "a<|end of text|>b <|end of text|> <|end of",
        "  leading and trailing  \n",
        "unseen words: zyxwvut ΑΒΓ Ж 🦀 \u0301combining",
        "",
    ]
    cases = [{"text": t, "ids": tok.encode(t).ids} for t in texts]
    with open(os.path.join(OUT, "hf_expected.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizers_version": __import__("tokenizers").__version__, "cases": cases}, f,
                  ensure_ascii=False, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
