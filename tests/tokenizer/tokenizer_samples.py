"""Sample texts and special tokens shared by the tokenizer tests."""

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[MASK]", "[PAD]"]
# Text that ASCII-heavy documentation lacks: emoji (with ZWJ), combining marks, CJK,
# right-to-left script, mixed newlines and whitespace runs.
UNICODE_SAMPLE = (
    "Parrots 🦜 and families 👨‍👩‍👧 say café vs cafe\u0301, naïve, Ångström.\r\n"
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.\n"
    "مرحبا بالعالم — שלום עולם\t\t tabs\u00a0and\u2003spaces   \n\n\r\r"
    "numbers 1234567 3.14159 and I'LL, we'd, you're.\n"
)
