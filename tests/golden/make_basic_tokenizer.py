#!/usr/bin/env python3
"""Reference for mnemo's BasicTokenizer (the text normalisation in front of WordPiece).

Written with the standard library only (unicodedata, str.lower, str.split), following the rules
of Hugging Face's BertTokenizer: clean the text (drop NUL, U+FFFD and every C* category but
tab/newline/return, map whitespace to a space), put spaces around CJK ideographs, NFC, split on
whitespace, then per word lower-case (str.lower of the whole word) and strip accents (NFD, drop
Mn), split off punctuation (ASCII non-alphanumerics and P*).

    python3 tests/golden/make_basic_tokenizer.py   # rewrites tests/golden/basic_tokenizer.json

The file records the Unicode version of the unicodedata that produced it; the cases avoid
characters newer than it.
"""
import json
import os
import unicodedata

CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
       (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch):
    return any(lo <= ord(ch) <= hi for lo, hi in CJK)


def strip_accents(word):
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def split_punctuation(word):
    pieces, current = [], ""
    for ch in word:
        if is_punctuation(ch):
            if current:
                pieces.append(current)
            pieces.append(ch)
            current = ""
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def basic_tokenize(text, lowercase, strip):
    """strip: -1 never, 1 always, 0 only when lower-casing (BertTokenizer's None)"""
    cleaned = ""
    for ch in text:
        if ord(ch) == 0 or ord(ch) == 0xFFFD or is_control(ch):
            continue
        cleaned += " " if is_whitespace(ch) else ch
    spaced = "".join(" %s " % ch if is_cjk(ch) else ch for ch in cleaned)
    out = []
    for word in unicodedata.normalize("NFC", spaced).split():
        if lowercase:
            word = word.lower()
        if strip == 1 or (strip == 0 and lowercase):
            word = strip_accents(word)
        out.extend(split_punctuation(word))
    return " ".join(out).split()


TEXTS = [
    "Hello, World! Don't stop: U.S.A. 3.14 e-mail",
    "Tiếng Việt có dấu: Ế ệ việt NGUYỄN Thị Hương",
    "Tie\u0302\u0301ng vie\u0323\u0302t",                  # decomposed Vietnamese, marks out of order
    "ΟΔΟΣ Σίσυφος ΣΑΣ. ΌΣΟΣ, Σ ΑΣ' ΈΛΑ",                 # Greek: final sigma, tonos
    "Привет, МИР! Ёлка, йод, ЁЖИК Українська їжа",
    "Բարեւ ձեզ, Հայաստան։ ԵՐԵՎԱՆ",                       # Armenian (its own full stop)
    "我爱北京天安门。日本語のテキスト、カタカナ",        # CJK ideographs, kana, CJK punctuation
    "한국어 텍스트입니다",                               # Hangul (NFC/NFD)
    "I \u2764\ufe0f \U0001F355 \U0001F44D\U0001F3FD! \U0001F468\u200D\U0001F469\u200D\U0001F467",
    "e\u0301 a\u0308 n\u0303 o\u0323\u0302 A\u030A",      # combining marks composed by NFC
    "\u01C4 \u01C5 \u01C6 \u01C4ungla",                   # DŽ ligatures (Lu, Lt, Ll)
    "\u0130stanbul \u0131s\u0131k",                        # dotted capital I, dotless i
    "stra\u00dfe \ufb01ne \u00c6ON \u0152uvre",
    "a\x00b c\u200bd e\u00adf g\ufeffh \x07bell \x1bx",    # NUL, format and control characters
    "tab\tnew\nline\r\n  nbsp\u00a0x\u3000y\u2028z\u2029w",
    "private\ue000use unassigned\u0378x surrogate-free",
    "\u0645\u064f\u062d\u064e\u0645\u0651\u064e\u062f \u0634\u0643\u0631\u0627\u060c",  # Arabic harakat, comma
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u05e2\u05d5\u05dc\u05dd",           # Hebrew niqqud
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e\u0964",           # Devanagari, danda
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",  # Thai
    "\uff21\uff22\uff23\uff11\uff12\uff13\uff01 \uff48\uff45\uff4c\uff4c\uff4f",       # fullwidth
    "\u2126hm \u212bngstr\u00f6m \u212aelvin",             # NFC singletons: ohm, angstrom, kelvin
    "x\u00b2 \u00bd \u2211\u222b \u00a9 \u20ac5 \u00bfQu\u00e9? \u00a1S\u00ed!",
    "\u201cquoted\u201d \u2018single\u2019 \u2014dash\u2013 \u2026 \u00abguillemets\u00bb",
    "\u2160\u2161 \u24b6\u24b7 \u00aa\u00ba",            # Roman numerals, circled letters
    "MIXED\u03a3case \u03a3\u0301\u03a3 A\u03a3",          # sigma beside a mark / inside a word
    "",
    "   \t  ",
]


def main():
    cases = []
    for text in TEXTS:
        for lowercase, strip in ((True, 0), (False, 0), (True, -1), (False, 1)):
            cases.append({"text": text, "lowercase": lowercase, "strip_accents": strip,
                          "tokens": basic_tokenize(text, lowercase, strip)})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "basic_tokenizer.json")
    with open(out, "w") as f:
        json.dump({"unicode": unicodedata.unidata_version, "cases": cases}, f, indent=1)
        f.write("\n")
    print("wrote %d cases to %s" % (len(cases), out))


if __name__ == "__main__":
    main()
