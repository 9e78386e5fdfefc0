"""Text for the terminal: what peers send made safe to draw (no control characters or
escapes), measured in cells, wrapped and cut to fit."""
import time
import unicodedata


def hhmm(t):
    return time.strftime("%H:%M", time.localtime(t))


def width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def clean(text):
    """What a peer sent, safe for the terminal: no control characters or escapes."""
    text = text.replace("\t", "    ")
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs") and c != "\n" else c for c in text)


def cells(text):
    return sum(width(c) for c in text)


def wrap(text, cols, indent=0):
    """Screen lines of at most `cols` cells, broken after a blank where there is one;
    continuation lines indented."""
    lines = []
    for para in clean(text).split("\n"):
        line, start = "", 0
        for ch in para:
            if cells(line) + width(ch) > cols:
                cut = line.rfind(" ", start) + 1
                if cut <= start or indent + cells(line[cut:]) + width(ch) > cols:
                    cut = len(line)
                lines.append(line[:cut].rstrip(" ") or line[:cut])
                line, start = " " * indent + line[cut:], indent
            line += ch
        lines.append(line)
    return lines


def fit(text, cols):
    """`text` cut to `cols` cells."""
    out, used = "", 0
    for ch in clean(text).replace("\n", " "):
        if used + width(ch) > cols:
            break
        out += ch
        used += width(ch)
    return out


def size(n):
    """A byte count as people read it: 1.2 MB."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
