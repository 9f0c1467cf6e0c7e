"""Memory a process holds but no longer uses, handed back between the phases of a run (lab notebook, "Memory")."""

from __future__ import annotations

import contextlib
import ctypes
import re
import sys
from pathlib import Path

from amc.runtime.hardware import has_gpu_driver


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``) between phases of a run, and, on a
    machine without a GPU, the pages of the GPU libraries that torch loaded (``page_out_gpu_libraries``).

    glibc keeps freed activations under its adaptive mmap threshold in the heap, so what one phase freed stays
    resident through the next. Only at phase boundaries: trimmed after every episode, the next one faults its
    pages back in, and fixing glibc's threshold instead slows training.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    page_out_gpu_libraries()


_MADV_DONTNEED, _MADV_PAGEOUT = 4, 21  # PAGEOUT: Linux 5.4+
# The libraries of torch's CUDA build: its own, and those of the nvidia-* and cuda-* wheels it loads.
_GPU_LIBRARY = re.compile(r"/(nvidia|cuda|cusparselt)[^/]*/.*\.so|/libtorch_cuda[^/]*\.so|/libc10_cuda\.so")


def page_out_gpu_libraries() -> None:
    """On a machine without a GPU driver: drop from this process's resident set the pages of the GPU libraries
    that ``import torch`` loaded (a CUDA build loads them whatever the machine, and nothing on a CPU reads them
    again). A read-only mapping that nothing wrote is dropped (``MADV_DONTNEED``: a page read again comes back
    from the file, the same bytes); any other is only advised out (``MADV_PAGEOUT``). No state is lost.
    """
    if not sys.platform.startswith("linux") or has_gpu_driver():
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        mappings = _gpu_library_mappings(Path("/proc/self/smaps").read_text())
    except OSError:
        return
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, end, untouched in mappings:
        libc.madvise(start, end - start, _MADV_DONTNEED if untouched else _MADV_PAGEOUT)


def _gpu_library_mappings(smaps: str) -> list[tuple[int, int, bool]]:
    """(start, end, read-only and never written) of every mapping of a GPU library in ``/proc/self/smaps``."""
    found: list[tuple[int, int, bool]] = []
    current: tuple[int, int, bool] | None = None  # the GPU-library mapping whose fields are being read
    for line in smaps.splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":") and "-" in fields[0]:  # header: range perms offset dev inode path
            if current:
                found.append(current)
            current = None
            if len(fields) >= 6 and _GPU_LIBRARY.search(fields[5]):
                start, end = (int(a, 16) for a in fields[0].split("-"))
                current = (start, end, "w" not in fields[1])
        elif current and fields[:1] in (["Private_Dirty:"], ["Anonymous:"]) and int(fields[1]) > 0:
            current = (current[0], current[1], False)
    if current:
        found.append(current)
    return found
