"""Streaming crash dump summary: format, executable, signal/exception code, and a fingerprint.

Only the first HEADER_WINDOW bytes are kept (the headers and notes that matter sit at the start of
ELF cores and minidumps); the rest is hashed and counted, then dropped.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

HEADER_WINDOW = 4 * 1024 * 1024
UNKNOWN_PREFIX = 4096

ELF_CORE, MINIDUMP, UNKNOWN = "elf-core", "minidump", "unknown"

PT_NOTE = 4
NT_PRSTATUS, NT_PRPSINFO = 1, 3
NT_SIGINFO, NT_FILE = 0x53494749, 0x46494C45
EM_X86_64, EM_AARCH64 = 62, 183
# Offset of the program counter in struct elf_prstatus (pr_reg starts at 112 on both).
_PC_OFFSET = {EM_X86_64: 112 + 16 * 8, EM_AARCH64: 112 + 32 * 8}

# Linux numbering: the dumps come from Linux nodes whatever the collector runs on.
SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS",
}

MD_MODULE_LIST, MD_EXCEPTION = 4, 6


@dataclass(frozen=True)
class CrashSummary:
    size: int
    sha256: str
    format: str
    executable: str | None = None
    signal: int | None = None
    signal_name: str | None = None
    exception_code: str | None = None  # minidump, e.g. "0xC0000005"
    location: str | None = None  # module+0xoffset, or a page-offset of the pc
    fingerprint: str = ""
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "executable": self.executable,
            "signal": self.signal,
            "signalName": self.signal_name,
            "exceptionCode": self.exception_code,
            "location": self.location,
            "fingerprint": self.fingerprint,
            "note": self.note,
        }


@dataclass(frozen=True)
class _Parsed:
    format: str
    executable: str | None = None
    signal: int | None = None
    exception_code: int | None = None
    location: str | None = None
    note: str | None = None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


MAX_FIELD = 200


def _shown(value: str | None) -> str | None:
    """A name read out of a dump, as a report may show it: printable, and short (a dump is hostile
    input: its file names can be megabytes of bidi controls)."""
    if value is None:
        return None
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in value[:MAX_FIELD * 2])
    return text[:MAX_FIELD] or None


def _elf_notes(buf: bytes, end: str, offset: int, size: int):
    pos, stop = offset, min(offset + size, len(buf))
    while pos + 12 <= stop:
        namesz, descsz, ntype = struct.unpack_from(end + "III", buf, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        nxt = desc_at + ((descsz + 3) & ~3)
        if nxt > stop or nxt <= pos:
            return
        yield ntype, buf[desc_at : desc_at + descsz]
        pos = nxt


def _nt_file_lookup(desc: bytes, end: str, word: str, pc: int) -> str | None:
    w = struct.calcsize(word)
    count, page = struct.unpack_from(end + word * 2, desc, 0)
    table = 2 * w
    names_at = table + count * 3 * w
    if count > 100_000 or names_at > len(desc):
        return None
    names = desc[names_at:].split(b"\0")
    for i in range(min(count, len(names))):
        start, stop, file_ofs = struct.unpack_from(end + word * 3, desc, table + i * 3 * w)
        if start <= pc < stop:
            return f"{_basename(names[i].decode('utf-8', 'replace'))}+{pc - start + file_ofs * page:#x}"
    return None


def _parse_elf(buf: bytes) -> _Parsed:
    if len(buf) < 52:
        return _Parsed(ELF_CORE, note="truncated ELF header")
    cls, data = buf[4], buf[5]
    if cls not in (1, 2) or data not in (1, 2):
        return _Parsed(UNKNOWN, note="ELF with unknown class or byte order")
    end = "<" if data == 1 else ">"
    word = "Q" if cls == 2 else "I"
    e_type, e_machine = struct.unpack_from(end + "HH", buf, 16)
    if e_type != 4:
        return _Parsed(UNKNOWN, note=f"ELF but not a core file (e_type {e_type})")
    if cls == 2:
        (phoff,) = struct.unpack_from(end + "Q", buf, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", buf, 54)
    else:
        (phoff,) = struct.unpack_from(end + "I", buf, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", buf, 42)
    exe = signal = pc = None
    file_desc = None
    for i in range(min(phnum, 65535)):
        at = phoff + i * phentsize
        if at + phentsize > len(buf) or phentsize < (56 if cls == 2 else 32):
            break
        if cls == 2:
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(end + "IIQQQQ", buf, at)
        else:
            p_type, p_offset, _, _, p_filesz = struct.unpack_from(end + "IIIII", buf, at)
        if p_type != PT_NOTE:
            continue
        for ntype, desc in _elf_notes(buf, end, p_offset, p_filesz):
            if ntype == NT_PRPSINFO and exe is None:
                fname_at = 40 if cls == 2 else 28
                if len(desc) >= fname_at + 16:
                    exe = _cstr(desc[fname_at : fname_at + 16]) or None
            elif ntype == NT_SIGINFO and len(desc) >= 4:
                signal = struct.unpack_from(end + "i", desc, 0)[0]
            elif ntype == NT_PRSTATUS and pc is None:
                if signal is None and len(desc) >= 14:
                    signal = struct.unpack_from(end + "h", desc, 12)[0] or None  # pr_cursig
                pc_at = _PC_OFFSET.get(e_machine) if cls == 2 else None
                if pc_at is not None and len(desc) >= pc_at + 8:
                    pc = struct.unpack_from(end + "Q", desc, pc_at)[0]
            elif ntype == NT_FILE and file_desc is None:
                file_desc = desc
    location = None
    if pc is not None:
        if file_desc is not None:
            try:
                location = _nt_file_lookup(file_desc, end, word, pc)
            except struct.error:
                location = None
        # Without a mapping, the pc's offset within its page survives address randomisation.
        location = location or f"pc&0xfff={pc & 0xFFF:#x}"
    note = None if exe or signal else "no readable notes in the header window"
    return _Parsed(ELF_CORE, executable=exe, signal=signal, location=location, note=note)


def _md_string(buf: bytes, rva: int) -> str | None:
    if rva + 4 > len(buf):
        return None
    (length,) = struct.unpack_from("<I", buf, rva)
    raw = buf[rva + 4 : rva + 4 + min(length, 2048)]
    return raw.decode("utf-16-le", "replace") if len(raw) == min(length, 2048) else None


def _parse_minidump(buf: bytes) -> _Parsed:
    if len(buf) < 32:
        return _Parsed(MINIDUMP, note="truncated minidump header")
    nstreams, dir_rva = struct.unpack_from("<II", buf, 8)
    streams: dict[int, tuple[int, int]] = {}
    for i in range(min(nstreams, 4096)):
        at = dir_rva + 12 * i
        if at + 12 > len(buf):
            break
        stype, size, rva = struct.unpack_from("<III", buf, at)
        streams.setdefault(stype, (size, rva))
    code = address = None
    if MD_EXCEPTION in streams:
        _, rva = streams[MD_EXCEPTION]
        if rva + 32 <= len(buf):
            code = struct.unpack_from("<I", buf, rva + 8)[0]
            address = struct.unpack_from("<Q", buf, rva + 24)[0]
    exe = location = None
    if MD_MODULE_LIST in streams:
        _, rva = streams[MD_MODULE_LIST]
        if rva + 4 <= len(buf):
            (count,) = struct.unpack_from("<I", buf, rva)
            for i in range(min(count, 10_000)):
                at = rva + 4 + 108 * i
                if at + 24 > len(buf):
                    break
                base, size = struct.unpack_from("<QI", buf, at)
                name_rva = struct.unpack_from("<I", buf, at + 20)[0]
                name = _md_string(buf, name_rva)
                if i == 0 and name:
                    exe = _basename(name)  # the first module is the process image
                if address is not None and base <= address < base + size and name:
                    location = f"{_basename(name)}+{address - base:#x}"
    if location is None and address is not None:
        # Windows randomises image bases in 64 KiB steps.
        location = f"addr&0xffff={address & 0xFFFF:#x}"
    note = None if code is not None else "no exception stream in the header window"
    return _Parsed(MINIDUMP, executable=exe, exception_code=code, location=location, note=note)


def _parse(prefix: bytes) -> _Parsed:
    if prefix[:4] == b"\x7fELF":
        try:
            return _parse_elf(prefix)
        except struct.error:
            return _Parsed(ELF_CORE, note="malformed ELF headers")
    if prefix[:4] == b"MDMP":
        try:
            return _parse_minidump(prefix)
        except struct.error:
            return _Parsed(MINIDUMP, note="malformed minidump headers")
    return _Parsed(UNKNOWN)


class CrashDumpScanner:
    def __init__(self, header_window: int = HEADER_WINDOW):
        self._hash = hashlib.sha256()
        self._size = 0
        self._window = header_window
        self._head = bytearray()

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._hash.update(chunk)
        self._size += len(chunk)
        room = self._window - len(self._head)
        if room > 0:
            self._head += chunk[:room]

    def result(self) -> CrashSummary:
        head = bytes(self._head)
        parsed = _parse(head)
        if parsed.format == UNKNOWN:
            # Same leading bytes, same group: the best there is without a known layout.
            basis = f"{UNKNOWN}|{hashlib.sha256(head[:UNKNOWN_PREFIX]).hexdigest()}"
        else:
            code = parsed.signal if parsed.format == ELF_CORE else parsed.exception_code
            basis = f"{parsed.format}|{parsed.executable}|{code}|{parsed.location}"
        return CrashSummary(
            size=self._size,
            sha256=self._hash.hexdigest(),
            format=parsed.format,
            executable=_shown(parsed.executable),
            signal=parsed.signal,
            signal_name=SIGNALS.get(parsed.signal) if parsed.signal else None,
            exception_code=f"{parsed.exception_code:#010X}".replace("0X", "0x")
            if parsed.exception_code is not None
            else None,
            location=_shown(parsed.location),
            fingerprint=hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest(),
            note=parsed.note if self._size else "empty file",
        )


def scan_crash_dump(chunks: Iterable[bytes], header_window: int = HEADER_WINDOW) -> CrashSummary:
    scanner = CrashDumpScanner(header_window)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.result()
