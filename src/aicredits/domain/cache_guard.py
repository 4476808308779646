"""The semantic layer's near-miss guard (pure): two questions close in embedding space still
get different answers when they differ in a number, a negation, a piece of code, the language
they are asked in, or a named thing. A candidate above the similarity threshold is served only
if none of these differ (docs/caching.md says what each check compares).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_DEVANAGARI_DIGITS = str.maketrans("०१२३४५६७८९", "0123456789")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
# letters with their combining marks (Devanagari vowel signs are marks, not \w)
_WORD = re.compile(r"(?:[^\W_]|[\u0900-\u0963\u0300-\u036f])+(?:'[^\W_]+)?", re.UNICODE)
_CODE = re.compile(r"`{1,3}([^`]+)`{1,3}")
_CODEISH = re.compile(r"[A-Za-z_][\w]*(?:[.(\[=<>+\-*/%]|::|->)[\w\s.()\[\]'\"=<>+\-*/%,:]*")

NUMBER_WORDS = {
    # English
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "thirty": "30",
    "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1000000",
    "lakh": "100000", "crore": "10000000", "half": "0.5", "double": "x2", "twice": "x2", "triple": "x3",
    "first": "#1", "second": "#2", "third": "#3", "fourth": "#4", "fifth": "#5", "last": "#-1",
    # Hindi, in Devanagari
    "शून्य": "0", "एक": "1", "दो": "2", "तीन": "3", "चार": "4", "पांच": "5", "पाँच": "5", "छह": "6", "छः": "6",
    "सात": "7", "आठ": "8", "नौ": "9", "दस": "10", "बीस": "20", "पचास": "50", "सौ": "100", "हज़ार": "1000",
    "हजार": "1000", "लाख": "100000", "करोड़": "10000000", "आधा": "0.5", "दोगुना": "x2", "पहला": "#1",
    "पहली": "#1", "दूसरा": "#2", "दूसरी": "#2", "तीसरा": "#3", "तीसरी": "#3", "आखिरी": "#-1",
}
HINGLISH_NUMBERS = {
    "ek": "1", "do": "2", "teen": "3", "char": "4", "chaar": "4", "paanch": "5", "panch": "5", "chhe": "6",
    "saat": "7", "aath": "8", "nau": "9", "das": "10", "bees": "20", "pachas": "50", "pachaas": "50",
    "sau": "100", "hazaar": "1000", "hazar": "1000", "aadha": "0.5", "pehla": "#1", "pehli": "#1",
    "doosra": "#2", "dusra": "#2", "dusri": "#2", "teesra": "#3", "tisra": "#3", "aakhri": "#-1",
}
ENGLISH_NEGATIONS = {
    "not", "no", "never", "without", "none", "nothing", "neither", "nor", "cannot", "isn't", "aren't",
    "wasn't", "weren't", "don't", "doesn't", "didn't", "won't", "wouldn't", "can't", "couldn't",
    "shouldn't", "mustn't", "hasn't", "haven't", "avoid", "except", "excluding",
    "नहीं", "न", "मत", "बिना", "बगैर", "कभी",
}
HINGLISH_NEGATIONS = {"nahi", "nahin", "nai", "mat", "bina", "bagair", "kabhi", "na"}
# words that mark romanised Hindi (Hinglish) in Latin script
HINGLISH = {
    "hai", "hain", "kya", "kaise", "kaisa", "kaisi", "kyun", "kyu", "kab", "kahan", "kaun", "kitna", "kitne",
    "kitni", "mein", "main", "mera", "meri", "mere", "tum", "aap", "apna", "apni", "ka", "ki", "ke", "ko",
    "se", "aur", "ya", "bhi", "nahi", "nahin", "hota", "hoti", "hote", "karna", "karo", "karein", "kar",
    "batao", "bataiye", "bata", "samjhao", "chahiye", "sakte", "sakta", "sakti", "wala", "wali", "liye",
    "matlab", "accha", "acha", "theek", "yeh", "ye", "woh", "wo", "iska", "uska", "raha", "rahi", "gaya",
}
# words asking for an answer in a given language or format: a different one is a different answer
TARGETS = {
    "english", "hindi", "hinglish", "tamil", "telugu", "bengali", "bangla", "marathi", "gujarati", "kannada",
    "malayalam", "punjabi", "urdu", "odia", "french", "german", "spanish", "italian", "portuguese",
    "japanese", "chinese", "korean", "russian", "arabic", "sanskrit",
    "python", "javascript", "typescript", "java", "c", "c++", "c#", "go", "golang", "rust", "ruby", "php",
    "kotlin", "swift", "sql", "bash", "shell", "html", "css", "r", "scala", "perl", "haskell",
    "json", "yaml", "xml", "csv", "markdown", "table", "bullet", "bullets", "list", "poem", "haiku",
    "essay", "tweet", "email", "summary", "story",
    "अंग्रेज़ी", "अंग्रेजी", "हिंदी", "हिन्दी", "तमिल", "बंगाली", "मराठी", "फ्रेंच", "जर्मन",
    "angrezi", "kavita", "kahani",
}


# function words of questions (English, Hindi, Hinglish): what is left are the content words
STOPWORDS = {
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "from", "by", "about", "into", "as", "and",
    "or", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "can", "could", "should",
    "would", "will", "shall", "may", "might", "must", "i", "me", "my", "mine", "we", "our", "you", "your",
    "it", "its", "this", "that", "these", "those", "there", "here", "what", "which", "who", "whom", "whose",
    "why", "how", "when", "where", "tell", "explain", "give", "please", "some", "any", "need", "get", "make",
    "so", "if", "than", "then", "up", "out", "way", "ways", "like", "mean", "meaning", "called", "known",
    "क्या", "है", "हैं", "का", "की", "के", "को", "में", "से", "कैसे", "कौन", "कब", "कहाँ", "कहां", "क्यों",
    "था", "थी", "थे", "होता", "होती", "होते", "हो", "और", "या", "भी", "मैं", "मुझे", "मेरा", "मेरी", "मेरे",
    "अपना", "अपनी", "अपने", "आप", "कर", "करें", "करूँ", "करू", "करते", "करना", "चाहिए", "सकता", "सकते",
    "सकती", "हूँ", "यह", "वह", "तो", "पर", "लिए", "जाता", "जाती", "जाते", "किसने", "किसे", "कहते", "सी",
    "सा", "बताइए", "बताओ", "दीजिए", "रहा", "रही", "गया", "गई", "हुआ", "हुई", "कोई", "कुछ", "बारे", "समझाइए",
}


def _stem(w: str) -> str:
    if w.isascii() and len(w) > 4:
        for suffix in ("ing", "ies", "es", "ed", "s"):
            if w.endswith(suffix):
                return w[: -len(suffix)]
    return w


def _same_word(x: str, y: str) -> bool:
    """One word in two forms (discovered / discoverer, बदलूं / बदल): a long enough common prefix."""
    n = 0
    for cx, cy in zip(x, y, strict=False):
        if cx != cy:
            break
        n += 1
    shorter = min(len(x), len(y))
    return n >= (4 if x.isascii() else 3) and n >= 0.6 * shorter


def swapped(a: str, b: str, lang: str) -> bool:
    """The same question with one or two content words exchanged for others (water -> ethanol,
    dogs -> cats): the usual shape of a near-miss, rarely of a paraphrase."""
    return _swapped(_content(a, lang), _content(b, lang))


def _content(text: str, lang: str) -> frozenset[str]:
    stop = STOPWORDS | (HINGLISH if lang == "hi-latn" else set())
    return frozenset(_stem(w) for w in _words(_fold(text)) if w not in stop)


def _swapped(ca: frozenset[str], cb: frozenset[str]) -> bool:
    only_a = {w for w in ca - cb if not any(_same_word(w, v) for v in cb)}
    only_b = {w for w in cb - ca if not any(_same_word(w, v) for v in ca)}
    return bool(only_a and only_b and len(only_a) <= 2 and len(only_b) <= 2 and ca & cb)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).translate(_DEVANAGARI_DIGITS)


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text):
        w = w.lower()
        out.append(w.removesuffix("'s"))
    return out


def numbers(text: str, lang: str = "latn") -> list[str]:
    text = _fold(text)
    found = [n.replace(",", "") for n in _NUMBER.findall(text)]
    words = _words(text)
    found += [NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS]
    if lang == "hi-latn":
        found += [HINGLISH_NUMBERS[w] for w in words if w in HINGLISH_NUMBERS]
    return sorted(found)


def negations(text: str, lang: str = "latn") -> int:
    text = _fold(text).lower()
    extra = HINGLISH_NEGATIONS if lang == "hi-latn" else ()
    return sum(1 for w in _words(text) if w in ENGLISH_NEGATIONS or w in extra) + text.count("n't")


def code(text: str) -> list[str]:
    spans = [s.strip() for s in _CODE.findall(text)]
    rest = _CODE.sub(" ", text)
    spans += [m.group(0).strip() for m in _CODEISH.finditer(rest) if any(c in m.group(0) for c in "()[]=<>+*/%")]
    return sorted(re.sub(r"\s+", "", s) for s in spans)


def language(text: str) -> str:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "none"
    deva = sum(1 for c in letters if "\u0900" <= c <= "\u097f")
    if deva * 2 >= len(letters):
        return "hi"
    latin = sum(1 for c in letters if c < "\u0250")
    if latin * 2 < len(letters):
        return "other:" + unicodedata.name(letters[0], "?").split()[0]
    ws = _words(text)
    hing = sum(1 for w in ws if w in HINGLISH)
    return "hi-latn" if ws and hing * 4 >= len(ws) and hing >= 2 else "latn"


def targets(text: str) -> set[str]:
    low = _fold(text).lower()
    found = {w for w in _words(low) if w in TARGETS}
    for special in ("c++", "c#"):
        if special in low:
            found.add(special)
    return found


def names(text: str) -> set[str]:
    """Capitalised words not at the start of a sentence (Latin script): the named things."""
    out = set()
    for sentence in re.split(r"(?<=[.?!:;])\s+|\n+", text):
        ws = _words(sentence)
        raw = _WORD.findall(sentence)
        for w, low in zip(raw[1:], ws[1:], strict=True):
            if w[:1].isupper() and low not in ENGLISH_NEGATIONS and w != "I":
                out.add(low)
    return out


SWAP_COSINE = 0.99   # above this, exchanged words are taken for synonyms (ocean / sea)


@functools.lru_cache(maxsize=8192)
def _language(text: str) -> str:
    return language(text)


@functools.lru_cache(maxsize=8192)
def _features(text: str, lang: str) -> tuple:
    """What differs() compares, per text (cached: a lookup compares one question with up to four
    stored ones, and stored questions come back)."""
    return (tuple(numbers(text, lang)), negations(text, lang) > 0, tuple(code(text)), frozenset(targets(text)),
            _content(text, lang), frozenset(_words(text)), frozenset(names(text)))


def differs(a: str, b: str, cosine: float = 0.0) -> str | None:
    """Why two texts must not share an answer, or None when no guard sees a difference.
    `cosine`: their embeddings' similarity (the swap check trusts only a very high one)."""
    lang = _language(a)
    if lang != _language(b):
        return "language"
    num_a, neg_a, code_a, tgt_a, content_a, words_a, names_a = _features(a, lang)
    num_b, neg_b, code_b, tgt_b, content_b, words_b, names_b = _features(b, lang)
    if num_a != num_b:
        return "number"
    if neg_a != neg_b:
        return "negation"
    if code_a != code_b:
        return "code"
    if tgt_a != tgt_b:
        return "target"
    if cosine < SWAP_COSINE and _swapped(content_a, content_b):
        return "swap"
    # a named thing of one text missing from the other (in any case)
    if any(n not in words_b for n in names_a) or any(n not in words_a for n in names_b):
        return "name"
    return None
