"""Where a task crashed, by the backtrace it printed in its logs: read as the log streams past (the same
chunks logscan reads), in bounded memory.

What it recognizes, as each runtime prints it:
- Python: a traceback (`Traceback (most recent call last):` ... `ValueError: ...`): its innermost frame,
  the last `File "...", line N, in f`, and the exception's type; a faulthandler dump (`Fatal Python error:
  Segmentation fault`, then `Current thread ... (most recent call first):`): the current thread's first
  frame.
- Native code: gdb's and lldb's `bt` (`#0  0x... in f (args) at file.c:42`, `frame #0: ...`), glibc's
  backtrace_symbols (`./solver(compute+0x1d)[0x55...]`), a sanitizer's report (`ERROR: AddressSanitizer:
  heap-buffer-overflow ...` then `#0 0x... in f file.c:42:7`: its first stack only, the `allocated by`
  stacks after it say where the memory came from) and UBSan's `file.c:5:3: runtime error: ...`.
- Rust: `thread 'main' panicked at src/main.rs:10:5:` (and the older `panicked at 'msg', src/main.rs:10:5`).
- Go: `panic: ...` or `fatal error: ...`, then the first goroutine's stack.
- Java: `Exception in thread "main" java.lang.X: ...`, then its `at` frames (the exception thrown, not its
  `Caused by:`); .NET: `Unhandled exception. System.X: ...`, then its `at` frames.
Which frame of a stack is where it crashed: backtrace_frames.pick (Python prints most recent call last,
so its last frame).

A file holding several: the last one wins (a program that logs a handled error and then dies prints the
fatal one last); gdb's `thread apply all bt` is several stacks, so its last thread. Lines are cut at
logscan's MAX_LINE_BYTES as logscan cuts them, and a stack keeps MAX_FRAMES frames. Whole runs of lines
that hold no marker of a backtrace are skipped by `bytes.find`, so a log without one costs a few searches
per chunk. What is kept is redacted, its non-printables replaced, and cut (a long path loses its start,
so the file's name and line stay).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from shared.pure import backtrace_frames as frames
from shared.pure.backtrace_frames import Frame
from shared.pure.logscan import MAX_LINE_BYTES
from shared.pure.redact import redact_secrets

MAX_FRAMES = 64  # of one stack: the faulting frame is near its top
# report.json lists 500 failed tasks and 100 crash groups, each with a backtrace, in about 1 MiB in all.
MAX_FRAME_CHARS = 100
MAX_KIND_CHARS = 40
MAX_PREAMBLE_LINES = 50  # between a header and its first frame (a panic's or an exception's message)


class _Markers:
    """What a line that may start a backtrace holds: one of these literals. Each may name a byte of it to
    memchr for first: memchr is many times faster than a search for a longer literal, and most logs hold
    none of these bytes."""

    def __init__(self, *markers: tuple[bytes, bytes | None]):
        listed = [(marker, gate, marker.index(gate) if gate else 0) for marker, gate in markers]
        self.plain = tuple(m for m in listed if m[1] is None)
        self.gated = tuple(m for m in listed if m[1] is not None)
        self.all = self.plain + self.gated  # the order `first` returns them in

    def first(self, buf: bytes, pos: int, end: int) -> list[int]:
        """Where each is next in buf[pos:end] (end: nowhere): the search nearly every chunk of a log without
        a backtrace ends with, so without a call per marker."""
        found = [buf.find(marker, pos, end) for marker, _, _ in self.plain]
        for marker, byte, index in self.gated:
            at = buf.find(byte, pos + index, end)
            found.append(-1 if at < 0 else buf.find(marker, at - index, end))
        return [end if at < 0 else at for at in found]

    def in_line(self, line: bytes) -> bool:
        return any(marker in line for marker, _, _ in self.all)


# A report these start begins on a line holding one of logscan's error words (`Unhandled exception.`,
# `Fatal Python error:`, `thread 'main' panicked at`): where logscan found none, none begins.
WORDED = ((b"error: ", None), (b"panic: ", None), (b"Unhandled ", b"U"), (b"Traceback (most recent call last)", b"("),
          (b"Exception in thread \"", b'"'), (b"' panicked at ", b"'"))
# MemorySanitizer's header is a WARNING; gdb's signal line, the frames themselves, name no error.
WORDLESS = ((b"Sanitizer: ", b"z"), (b" signal SIG", b"G"), (b"#0", b"#"), (b")[0x", b"["))
_ALL, _WORDLESS = _Markers(*WORDED, *WORDLESS), _Markers(*WORDLESS)
MAX_SANITIZER_LINES = 500  # of a sanitizer's report after its first stack (shadow bytes, legend)
MORE, DONE, ENDED_BEFORE = range(3)  # a report's answer to a line: read on; it ended with it; before it

_EXCEPTION = re.compile(r"([A-Za-z_][\w.]{0,200})(?::|$)")
_GOROUTINE = re.compile(r"goroutine \d{1,12} \[[^\]]{0,200}\]:")
# MemorySanitizer reports its findings as warnings, and stops the program all the same.
_SANITIZER = re.compile(r"(?:ERROR: (\w{0,40}Sanitizer)|WARNING: (MemorySanitizer)): ")
_SIGNAL = re.compile(r"(?:received|with) signal (SIG[A-Z0-9]{2,10})")


@dataclass(frozen=True)
class Backtrace:
    format: str  # python, python-fatal, gdb, lldb, glibc, sanitizer, rust, go, java, dotnet
    kind: str | None  # the exception's type, the signal, the sanitizer's finding, panic
    frame: str  # where it crashed, as `function (file:line)`, `function+0x1d (module)` or `module+0x1d`

    def to_dict(self) -> dict:
        return {"format": self.format, "kind": self.kind, "frame": self.frame}


# As the sanitizers' documentation names them: the kind must fit MAX_KIND_CHARS with the finding.
_SANITIZER_NAMES = {"AddressSanitizer": "ASan", "UndefinedBehaviorSanitizer": "UBSan", "MemorySanitizer": "MSan",
                    "LeakSanitizer": "LSan", "ThreadSanitizer": "TSan", "HWAddressSanitizer": "HWASan"}


def _kind(text: str) -> str:
    """A type name too long loses its leading packages (`java.util.ConcurrentModificationException`)."""
    parts = text.split(".")
    while len(parts) > 1 and len(".".join(parts)) > MAX_KIND_CHARS:
        parts.pop(0)
    return _clean(".".join(parts), MAX_KIND_CHARS)


def _clean(text: str, limit: int) -> str:
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text[: limit * 2])
    return redact_secrets(text)[:limit]


# (format, kind, frame) as read: made into a Backtrace (cleaned, redacted) once, for the one a file ends with.
_Found = tuple[str, str | None, Frame]


def _make(format_: str, kind: str | None, frame: Frame | None) -> _Found | None:
    return None if frame is None else (format_, kind, frame)


def _redacted(text: str | None) -> str | None:
    return redact_secrets(text) if text else text


def _shown(found: _Found | None) -> Backtrace | None:
    if found is None:
        return None
    format_, kind, frame = found
    # Redacted before it is cut: show() may drop a path's start, and with it the `sig=` that marks a secret.
    safe = replace(frame, function=_redacted(frame.function), file=_redacted(frame.file),
                   module=_redacted(frame.module))
    return Backtrace(format_, _kind(kind) if kind else None, _clean(safe.show(MAX_FRAME_CHARS), MAX_FRAME_CHARS))


class _PythonTraceback:
    def __init__(self):
        self.frame: Frame | None = None
        self.kind: str | None = None

    def take(self, line: str) -> int:
        if not line.strip():
            return ENDED_BEFORE
        if line[0].isspace():
            self.frame = frames.python_frame(line) or self.frame
            return MORE
        match = _EXCEPTION.match(line)  # the first line not indented: the exception
        self.kind = match[1] if match else None
        return DONE

    def result(self) -> _Found | None:
        return _make("python", self.kind, self.frame)


class _FaultHandler:
    """faulthandler prints each thread's stack, most recent call first; the current thread's is the crash's."""

    def __init__(self, kind: str):
        self.kind = kind
        self.block = ""
        self.current: Frame | None = None
        self.first: Frame | None = None
        self.lines = 0

    def take(self, line: str) -> int:
        self.lines += 1
        text = line.strip()
        if not text:
            return MORE
        if text.endswith("(most recent call first):"):
            self.block = ("current" if text.startswith("Current thread 0x") else
                          "stack" if text.startswith("Stack ") else "other")
            return MORE
        if line[0].isspace():
            frame = frames.python_frame(line)
            if frame and self.block == "current" and self.current is None:
                self.current = frame
            if frame and self.first is None:
                self.first = frame
            return MORE
        if self.first is None and self.lines < MAX_PREAMBLE_LINES:
            return MORE  # `Python runtime state: initialized`
        return ENDED_BEFORE

    def result(self) -> _Found | None:
        return _make("python-fatal", self.kind, self.current or self.first)


class _Stack:
    """Native frames, most recent first, one per line: gdb, lldb, a sanitizer's, backtrace_symbols."""

    def __init__(self, format_: str, kind: str | None, read: Callable[[str], tuple[int | None, Frame] | None],
                 first: Frame):
        self.format, self.kind, self.read = format_, kind, read
        self.frames = [first]

    def take(self, line: str) -> int:
        parsed = self.read(line)
        if parsed is not None:
            number, frame = parsed
            if number == 0:
                return ENDED_BEFORE  # another stack starts: another thread, another report
            if len(self.frames) < MAX_FRAMES:
                self.frames.append(frame)
            return MORE
        if self.format == "gdb" and line[:1].isspace() and line.strip():
            return MORE  # `bt full` prints each frame's locals under it
        return ENDED_BEFORE

    def result(self) -> _Found | None:
        return _make(self.format, self.kind, frames.pick(self.frames, self.format == "glibc"))


class _SanitizerRest:
    """What a sanitizer prints after its first stack (where the memory was allocated, freed; shadow bytes)
    is not where it crashed: read past, to its SUMMARY."""

    def __init__(self):
        self.lines = 0

    def take(self, line: str) -> int:
        self.lines += 1
        if "SUMMARY: " in line or "==ABORTING" in line:
            return DONE
        if _SANITIZER.search(line) or self.lines > MAX_SANITIZER_LINES:
            return ENDED_BEFORE
        return MORE

    def result(self) -> None:
        return None


def _glibc(line: str) -> tuple[None, Frame] | None:
    frame = frames.glibc_frame(line)
    return (None, frame) if frame else None


class _GoPanic:
    def __init__(self, kind: str):
        self.kind = kind
        self.preamble = 0
        self.in_stack = False
        self.function: str | None = None
        self.frames: list[Frame] = []

    def take(self, line: str) -> int:
        if not self.in_stack:
            self.in_stack = bool(_GOROUTINE.fullmatch(line.rstrip()))
            self.preamble += 1
            return MORE if self.in_stack or self.preamble < MAX_PREAMBLE_LINES else ENDED_BEFORE
        if not line.strip():
            return DONE  # the first goroutine's stack ends; the others' are not the panic's
        if self.function is None:
            self.function = frames.go_function(line)
            return MORE if self.function else ENDED_BEFORE  # `created by ...`, `exit status 2`
        frame = frames.go_frame(self.function, line)
        self.function = None
        if frame is None:
            return ENDED_BEFORE
        if len(self.frames) < MAX_FRAMES:
            self.frames.append(frame)
        return MORE

    def result(self) -> _Found | None:
        return _make("go", self.kind, frames.pick(self.frames))


class _Thrown:
    """Java's and .NET's: a header naming the exception, maybe more lines of its message, then `at` frames."""

    def __init__(self, format_: str, kind: str | None, read: Callable[[str], Frame | None], goes_on: tuple[str, ...]):
        self.format, self.kind, self.read, self.goes_on = format_, kind, read, goes_on
        self.frames: list[Frame] = []
        self.preamble = 0

    def take(self, line: str) -> int:
        frame = self.read(line)
        if frame is not None:
            if len(self.frames) < MAX_FRAMES:
                self.frames.append(frame)
            return MORE
        if not self.frames:
            self.preamble += 1
            return MORE if self.preamble < MAX_PREAMBLE_LINES else ENDED_BEFORE
        return MORE if line.strip().startswith(self.goes_on) else ENDED_BEFORE

    def result(self) -> _Found | None:
        return _make(self.format, self.kind, frames.pick(self.frames))


def _rust(line: str) -> _Found | None:
    tail = line.split("panicked at ", 1)[1].rstrip()
    parts = (tail[:-1] if tail.endswith(":") else tail.rsplit(", ", 1)[-1]).rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or not parts[0] or " " in parts[0]:
        return None
    return _make("rust", "panic", Frame(file=parts[0], line=int(parts[1])))


def _ubsan(line: str) -> _Found | None:
    head, _, what = line.partition(": runtime error: ")
    parts = head.strip().rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or " " in parts[0]:
        return None
    return _make("sanitizer", f"UBSan: {what.split(':', 1)[0].strip()}",
                 Frame(file=parts[0], line=int(parts[1])))


def _thrown_type(text: str) -> str | None:
    token = text.strip().split(":", 1)[0].split(" ", 1)[0]
    return token or None


# A signal or sanitizer header names the crash of a stack that starts within this many lines of it, or of none.
HEADER_REACH = 20


class BacktraceFinder:
    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES):
        self._max = max_line_bytes
        self._partial = bytearray()  # start of the current line, at most max_line_bytes
        self._active = None  # the report being read, when inside one
        self._found: _Found | None = None
        self._header: tuple[str, str | None] | None = None  # (format, kind) for the stack a header announced
        self._header_lines = 0  # lines since it
        self._closed = False

    def feed(self, chunk: bytes, error_words: bool = True) -> None:
        """error_words=False: logscan found none in this chunk's whole lines (its count did not move), so the
        markers that hold one need no search."""
        if not chunk:
            return
        markers = _ALL if error_words else _WORDLESS
        last = chunk.rfind(b"\n")
        if last < 0:
            self._extend(chunk, len(chunk))
            return
        start = 0
        if self._partial:
            first = chunk.find(b"\n")
            self._extend(chunk, first)
            line = bytes(self._partial)
            self._partial.clear()
            if self._active is not None or markers.in_line(line):
                self._line(line)
            start = first + 1
        self._lines(chunk, start, last + 1, markers)
        self._partial += chunk[last + 1: last + 1 + self._max]

    def _extend(self, chunk: bytes, end: int) -> None:
        room = self._max - len(self._partial)
        if room > 0:
            self._partial += chunk[: min(end, room)]

    def _lines(self, buf: bytes, pos: int, end: int, markers: _Markers) -> None:
        """The whole lines buf[pos:end]: each read while inside a report, else only those with a marker."""
        ahead: list[int] = []  # where each marker is next, at or after pos (end: nowhere)
        while pos < end:
            if self._active is None:
                if ahead:
                    ahead = [at if at >= pos else _find(buf, *marker, pos, end)
                             for at, marker in zip(ahead, markers.all, strict=True)]
                else:
                    ahead = markers.first(buf, pos, end)
                hit = min(ahead)
                if hit >= end:
                    self._age(buf, pos, end)
                    return
                line_start = max(pos, buf.rfind(b"\n", pos, hit) + 1)
                self._age(buf, pos, line_start)
                pos = line_start
            newline = buf.find(b"\n", pos, end)
            self._line(buf[pos: min(newline, pos + self._max)])
            pos = newline + 1

    def _line(self, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        while self._active is not None:
            verdict = self._active.take(text)
            if verdict == MORE:
                return
            self._end_report()  # a sanitizer's report goes on after its first stack
            if verdict == DONE:
                return
        self._start(text)

    def _end_report(self) -> None:
        report, self._active = self._active, None
        found = report.result()
        if found is not None:
            self._found = found
        if isinstance(report, _Stack) and report.format == "sanitizer":
            self._active = _SanitizerRest()

    def _age(self, buf: bytes, start: int, end: int) -> None:
        """Lines skipped between markers count against a header's reach."""
        if self._header is not None and end > start:
            self._header_lines += buf.count(b"\n", start, end)
            if self._header_lines > HEADER_REACH:
                self._header = None

    def _set_header(self, header: tuple[str, str | None]) -> None:
        self._header, self._header_lines = header, 0

    def _start(self, line: str) -> None:
        """A line outside any report: does one start here?"""
        if self._header is not None:
            self._header_lines += 1
            if self._header_lines > HEADER_REACH:
                self._header = None
        if "Sanitizer: " in line and (match := _SANITIZER.search(line)) is not None:
            what = line[match.end():].split(" on ", 1)[0].split(" (", 1)[0].split(":", 1)[0].strip()
            name = match[1] or match[2]
            self._set_header(("sanitizer", f"{_SANITIZER_NAMES.get(name, name)}: {what}"))
            return
        read = frames.lldb_frame if "frame #0" in line else frames.hash_frame
        numbered = read(line) if "#0" in line else None
        if numbered is not None and numbered[0] == 0:
            format_, kind = self._header or ("gdb", None)
            if read is frames.lldb_frame and format_ == "gdb":
                format_ = "lldb"
            self._header = None
            self._active = _Stack(format_, kind, read, numbered[1])
            return
        if ")[0x" in line and (frame := frames.glibc_frame(line)) is not None:
            self._active = _Stack("glibc", None, _glibc, frame)
            return
        self._start_other(line)

    def _start_other(self, line: str) -> None:
        if "Traceback (most recent call last):" in line:
            self._active = _PythonTraceback()
        elif "Fatal Python error: " in line:
            self._active = _FaultHandler(line.split("Fatal Python error: ", 1)[1].split(":", 1)[0].strip())
        elif line.startswith(("panic: ", "fatal error: ")):
            self._active = _GoPanic(line.split(":", 1)[0])
        elif "Exception in thread \"" in line:
            thread_and_type = line.split("Exception in thread \"", 1)[1]
            kind = _thrown_type(thread_and_type.split("\" ", 1)[1]) if "\" " in thread_and_type else None
            self._active = _Thrown("java", kind, frames.java_frame, ("...",))
        elif "Unhandled exception. " in line or "Unhandled Exception: " in line:
            kind = _thrown_type(re.split(r"Unhandled [Ee]xception[.:] ", line, maxsplit=1)[1])
            self._active = _Thrown("dotnet", kind, frames.dotnet_frame, ("---",))
        elif "panicked at " in line and "thread '" in line:
            self._found = _rust(line) or self._found
        elif ": runtime error: " in line:
            self._found = _ubsan(line) or self._found
        elif " signal SIG" in line and (signal := _SIGNAL.search(line)) is not None:
            self._set_header(("gdb", signal[1]))

    def result(self) -> Backtrace | None:
        """The backtrace the log ended with, if any; the finder is done after this."""
        if not self._closed:
            self._closed = True
            if self._partial:
                line = bytes(self._partial)
                self._partial.clear()
                if self._active is not None or _ALL.in_line(line):
                    self._line(line)
            if self._active is not None:
                self._end_report()
        return _shown(self._found)


def _find(buf: bytes, marker: bytes, byte: bytes | None, index: int, pos: int, end: int) -> int:
    if byte is not None:
        at = buf.find(byte, pos + index, end)
        if at < 0:
            return end
        pos = at - index
    at = buf.find(marker, pos, end)
    return end if at < 0 else at


def find_backtrace(chunks: Iterable[bytes]) -> Backtrace | None:
    finder = BacktraceFinder()
    for chunk in chunks:
        finder.feed(chunk)
    return finder.result()
