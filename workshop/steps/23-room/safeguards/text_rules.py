"""What a name or a message may contain, so that what people see is what was sent.

app.py's parse_message checks the shape and length of a frame, then calls check(): it
refuses, with a sentence for the person who typed it, text that would show as something
it is not. The page adds the other half: it isolates each name and message, so that what
one contains cannot reorder the text around it (see showMessage in chat.html).
"""
import unicodedata

# Accents stacked on one letter. Real writing stacks a few (Vietnamese two, pointed
# Hebrew three or four); "zalgo" text stacks dozens, to scribble over the lines around it.
MAX_MARKS_PER_CHAR = 5
# They reorder the characters after them: in a name, "\u202eevil" shows as "live", and
# "\u202egnp.exe" as "exe.png". Messages may hold them (right-to-left writing needs
# them at times); the page keeps their effect inside the message.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")
# Characters that draw nothing: controls and format characters (zero-width spaces and
# joiners, bidi controls), spaces, and marks, which only decorate the letter before them...
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})
# ...and the letters and symbols that are blank by design.
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def check(name, message):
    """Raise ValueError, in words for the person at the keyboard, if either would mislead."""
    for char in name:
        if char in BIDI_CONTROLS:
            raise ValueError(
                f"Your name contains an invisible character that reverses text ({code(char)});"
                " please remove it.")
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):  # a name is one line
            raise ValueError(f"Your name cannot contain line breaks or control characters"
                             f" ({code(char)}).")
    if name and not has_visible(name):
        raise ValueError("Your name has nothing visible in it; type a name, or leave it"
                         " empty to be anonymous.")
    if not has_visible(message):
        raise ValueError("Your message has nothing visible in it.")
    for text, whose in ((name, "name"), (message, "message")):
        if most_marks_on_one_char(text) > MAX_MARKS_PER_CHAR:
            raise ValueError(
                f"Your {whose} stacks too many accents on one letter; the limit is"
                f" {MAX_MARKS_PER_CHAR}.")


def has_visible(text):
    return any(unicodedata.category(char) not in INVISIBLE_CATEGORIES
               and char not in BLANK_CHARACTERS for char in text)


def most_marks_on_one_char(text):
    most = marks = 0
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("M"):
            marks += 1
            most = max(most, marks)
        elif category != "Cf":  # a zero-width joiner between marks still stacks them
            marks = 0
    return most


def code(char):
    return f"U+{ord(char):04X}"
