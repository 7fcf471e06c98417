"""One frame of a printed backtrace: read out of its line, judged the program's own or the runtime's, shown.

Every reader takes one line (already cut to a bounded length by the caller) and returns a Frame or None.
They use string methods and anchored patterns without nested repeats, so a hostile line costs time linear
in its length. Arguments are dropped: they are noise for grouping and may carry what the program was
given (a password, a URL with its SAS).

Which frame is where it crashed, in a stack printed most recent call first (`pick`): the first that is the
program's own. A frame is the runtime's when it lies in the C library, the dynamic loader, the C++ runtime
or a sanitizer's runtime (by module or by source path), when its name is reserved to the implementation
(a leading `__`, `_start`), or when its language's runtime owns it (Go's `runtime.`, the JDK's `java.`,
.NET's `System.`). Frames printed above a signal handler's trampoline are the handler's, not the crash's.
When every frame is the runtime's, the first one is shown: it is still where the program stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Names as they appear in `module+0x...` or `from /lib/...`, after the folder is dropped.
_SYSTEM_MODULE = re.compile(
    r"lib(?:c|m|dl|rt|pthread|stdc\+\+|c\+\+|c\+\+abi|gcc_s|unwind|asan|ubsan|tsan|msan|lsan|hwasan|"
    r"clang_rt\.[\w.+-]+)(?:[-.][\w.+-]*)?|ld-linux[\w.+-]*|ld(?:-[\d.]+)?\.so[\w.]*|linux-vdso\.so[\w.]*|"
    r"libsystem_\w+\.dylib|dyld")
# glibc's sources as its debug info names them (`./nptl/pthread_kill.c`, `../sysdeps/unix/...`), the C and
# C++ headers, and the sanitizers' runtime sources.
_SYSTEM_SOURCE = re.compile(
    r"(?:^\.{1,2}/(?:sysdeps|nptl|stdlib|signal|posix|csu|libio|malloc|string|elf|misc|assert)/|^/usr/include/|"
    r"compiler-rt/lib/|libsanitizer/)")
_HEX = re.compile(r"0x[0-9a-fA-F]{1,16}")
_HASH = re.compile(r"\s*(?:\*\s*)?#(\d{1,6})\s+")
_LLDB = re.compile(r"\s*(?:\*\s*)?frame #(\d{1,6}): 0x[0-9a-fA-F]{1,16} ")
_MODULE_OFFSET = re.compile(r"\(([^()\s]{1,1000})\+(0x[0-9a-fA-F]{1,16})\)")
_PATH = re.compile(r"[^\s()\"']{1,1000}")
_FILE_LINE = re.compile(r"(\S{1,1000}?):(\d{1,9})(?::\d{1,9})?")
_PYTHON = re.compile(r'\s+File "([^"]{0,2000})", line (\d{1,9})(?:,? in (.{1,500}))?')
_GLIBC = re.compile(r"(\S{1,1000}?)(?:\(([^()\s+]{0,500})(?:\+(0x[0-9a-fA-F]{1,16}))?\))?\s*\[0x[0-9a-fA-F]{1,16}\]")
_GO_LOCATION = re.compile(r"\t(\S{1,2000}?):(\d{1,9})(?: \+0x[0-9a-fA-F]{1,16})?")
JDK_PACKAGES = ("java.", "javax.", "jdk.", "sun.", "com.sun.")
DOTNET_NAMESPACES = ("System.", "Microsoft.")


@dataclass(frozen=True)
class Frame:
    function: str | None = None
    file: str | None = None
    line: int | None = None
    module: str | None = None
    offset: str | None = None  # within the function, or within the module when there is no function
    trampoline: bool = False  # gdb's `<signal handler called>`
    system: bool = False

    def show(self, limit: int = 100) -> str:
        """`function (file:line)`, `function+0x1d (module)` or `module+0x1d`, at most limit characters: a
        long function name loses its end, a long path its start, so the file's name and line stay."""
        function, file = self.function, self.file
        text = self._text(function, file)
        if len(text) > limit and function and len(function) > limit // 2:
            function = function[: limit // 2 - 1] + "\u2026"
            text = self._text(function, file)
        if len(text) > limit and file:
            keep = max(len(file) - (len(text) - limit) - 1, 0)
            file = "\u2026" + file[len(file) - keep:]
            text = self._text(function, file)
        return text[:limit]

    def _text(self, function: str | None, file: str | None) -> str:
        where = f"{file}:{self.line}" if file and self.line is not None else file
        offset = f"+{self.offset}" if self.offset else ""
        if function and where:
            return f"{function} ({where})"
        if function and self.module:
            return f"{function}{offset} ({self.module})"
        if where:
            return where
        if self.module:
            return f"{self.module}{offset}"
        return function or "?"


def basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


MAX_ARGUMENTS_SCAN = 512


def without_arguments(name: str) -> str:
    """`ns::step(int, double)` -> `ns::step`; `operator()(int)` -> `operator()`; `f (x=1)` (gdb) -> `f`."""
    name = name.strip()
    if name.endswith(")"):
        depth = 0
        # An argument list longer than this is cut short like an unbalanced one: a line of parentheses costs
        # a bounded walk, not one step per character of a 4 KB line.
        for i in range(len(name) - 1, max(len(name) - 1 - MAX_ARGUMENTS_SCAN, -1), -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                head = name[:i].rstrip()
                return head if head and not head.endswith("operator") else name
    # Unbalanced: a string argument holds a parenthesis; gdb puts a space before the argument list.
    return name[: name.index(" (")].strip() if " (" in name else name


def _native(function: str | None, file: str | None = None, line: int | None = None, module: str | None = None,
            offset: str | None = None) -> Frame:
    if function in ("??", ""):
        function = None
    module = basename(module) if module else None
    # A frame naming nothing (`?? ()`) tells the reader nothing either: passed over like the runtime's.
    system = bool((module and _SYSTEM_MODULE.fullmatch(module)) or (file and _SYSTEM_SOURCE.search(file))
                  or (function and (function.startswith("__") or function == "_start"))
                  or not (function or file or module))
    return Frame(function, file, line, module, offset, system=system)


def hash_frame(line: str) -> tuple[int, Frame] | None:
    """gdb (`#3  0x... in compute (n=0) at solver.c:5`, `#1 ... in raise () from /lib/libc.so.6`) and the
    sanitizers (`#0 0x... in compute /src/solver.c:5:12`, `#1 0x... in f (/lib/libc.so.6+0x29d8f)`):
    (frame number, frame)."""
    match = _HASH.match(line)
    if match is None:
        return None
    rest = line[match.end():].strip()
    number = int(match[1])
    if rest == "<signal handler called>":
        return number, Frame(trampoline=True)
    address = _HEX.match(rest)
    if address:
        rest = rest[address.end():].lstrip()
        rest = rest[3:] if rest.startswith("in ") else rest
    # Without an address or an argument list it is not a frame (a `#0 items done` line in a log).
    if not address and " (" not in rest:
        return None
    if rest.endswith(")") and " (BuildId: " in rest:
        rest = rest[: rest.rindex(" (BuildId: ")]
    at = rest.rfind(" at ")
    if at >= 0 and (where := _FILE_LINE.fullmatch(rest[at + 4:])):
        return number, _native(without_arguments(rest[:at]), where[1], int(where[2]))
    source = rest.rfind(" from ")
    if source >= 0 and _PATH.fullmatch(rest, source + 6):
        return number, _native(without_arguments(rest[:source]), module=rest[source + 6:])
    paren = rest.rfind("(")
    if paren >= 0 and (inside := _MODULE_OFFSET.fullmatch(rest, paren)):
        return number, _native(without_arguments(rest[:paren]) or None, module=inside[1], offset=inside[2])
    space = rest.rfind(" ")
    if space > 0 and (where := _FILE_LINE.fullmatch(rest[space + 1:])):
        return number, _native(without_arguments(rest[:space]), where[1], int(where[2]))
    return number, _native(without_arguments(rest))


def lldb_frame(line: str) -> tuple[int, Frame] | None:
    """`* frame #0: 0x0000000100003f58 solver`compute(n=0) at solver.c:5:10`."""
    match = _LLDB.match(line)
    if match is None:
        return None
    rest = line[match.end():].strip()
    module, tick, rest = rest.partition("`")
    if not tick:
        return int(match[1]), _native(None, module=module)
    at = rest.rfind(" at ")
    where = _FILE_LINE.fullmatch(rest[at + 4:]) if at >= 0 else None
    function = without_arguments((rest[:at] if where else rest).split(" + ")[0])
    return int(match[1]), _native(function, where[1] if where else None, int(where[2]) if where else None, module)


def glibc_frame(line: str) -> Frame | None:
    """backtrace_symbols: `./solver(compute+0x1d)[0x55d4c3a0b1d9]`, `/lib/.../libc.so.6(+0x42520)[0x7f...]`."""
    match = _GLIBC.fullmatch(line.strip())
    if match is None:
        return None
    return _native(match[2] or None, module=match[1], offset=match[3])


def python_frame(line: str) -> Frame | None:
    """A traceback's `  File "x.py", line 5, in f`, or faulthandler's `  File "x.py", line 5 in f`."""
    match = _PYTHON.fullmatch(line.rstrip())
    return Frame(match[3], match[1], int(match[2])) if match else None


def go_function(line: str) -> str | None:
    """The first line of a Go frame, `main.(*Solver).Step(0xc000010000, ...)`: its function."""
    if not line.endswith(")") or line[:1].isspace():
        return None
    name = line[: line.rfind("(")]
    return name or None


def go_frame(function: str, location: str) -> Frame | None:
    """The second line of a Go frame, `\\t/app/main.go:12 +0x1d`, with the function named on the first."""
    match = _GO_LOCATION.fullmatch(location.rstrip())
    if match is None:
        return None
    system = function.startswith(("runtime.", "runtime/")) or function == "panic"
    return Frame(function, match[1], int(match[2]), system=system)


def java_frame(line: str) -> Frame | None:
    """`\\tat com.x.Solver.compute(Solver.java:10)`; Java 9 adds the module: `at java.base/java.lang...`."""
    text = line.strip()
    if not text.startswith("at ") or not text.endswith(")") or "(" not in text:
        return None
    function = text[3: text.index("(")].rsplit("/", 1)[-1]
    where = text[text.index("(") + 1: -1]
    file, colon, number = where.rpartition(":")
    if colon and number.isdigit():
        return Frame(function, file, int(number), system=function.startswith(JDK_PACKAGES))
    return Frame(function, None if " " in where else where or None, system=function.startswith(JDK_PACKAGES))


def dotnet_frame(line: str) -> Frame | None:
    """`   at Ns.Solver.Compute(Int32 n) in /src/Solver.cs:line 12` (the ` in ...` part needs debug symbols)."""
    text = line.strip()
    if not text.startswith("at "):
        return None
    text = text[3:]
    file = number = None
    where = text.rfind(" in ")
    if where >= 0:
        path, marker, digits = text[where + 4:].rpartition(":line ")
        if marker and digits.isdigit():
            file, number, text = path, int(digits), text[:where]
    function = without_arguments(text)
    return Frame(function, file, number, system=function.startswith(DOTNET_NAMESPACES))


def pick(frames: list[Frame], handler_before_unnamed_system: bool = False) -> Frame | None:
    """Where it crashed, of a stack printed most recent call first (see the module's docstring).

    handler_before_unnamed_system: a backtrace_symbols list names no trampoline; printed from a signal
    handler, it shows the handler's frames, then an unnamed C library frame (the trampoline), then the
    program where the signal hit. An unnamed C library frame followed by the program's own marks that.
    """
    if not frames:
        return None
    start = 0
    for i, frame in enumerate(frames):
        unnamed_trampoline = (handler_before_unnamed_system and frame.system and frame.function is None
                              and i + 1 < len(frames) and not frames[i + 1].system)
        if frame.trampoline or unnamed_trampoline:
            start = i + 1
            break
    rest = [f for f in frames[start:] if not f.trampoline] or [f for f in frames if not f.trampoline]
    if not rest:
        return None
    return next((f for f in rest if not f.system), rest[0])
