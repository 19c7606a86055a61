"""Whether a PyTorch checkpoint in torch's legacy format (``torch.save(...,
_use_new_zipfile_serialization=False)``: a pickle stream, not a zip) ends inside its pickles.

Such a file is five pickles one after another (torch's magic number, its protocol version, the
saving system's info, the checkpoint's objects, the sorted keys of its storages), then each
storage's raw data. Cut inside those pickles, it makes torch's safe loader fail in ways that say
nothing of a short file: an ``EOFError``, an ``IndexError``, a ``struct.error``, a
``UnicodeDecodeError``, or, where the cut falls inside a global's name (``numpy.ndarra``), a
refusal of that clipped name as a global it does not allow. `unfinished` tells those apart from
a whole file holding objects the loader refuses by walking the pickles' opcodes with
`pickletools.genops`, which decodes them without building any object: nothing in the file runs.
"""

from __future__ import annotations

import mmap
import os
import pickletools

from videoswin_tf.file_kind import PICKLE_PROTOCOL

# torch.save's legacy format writes these pickles before the storages' data
# (torch.serialization._legacy_save: magic number, protocol version, sys_info, the object,
# the storage keys).
LEGACY_PICKLES = 5


def unfinished(path: str | os.PathLike) -> str | None:
    """Where a legacy-format checkpoint ``path`` ends inside its pickles, as the detail of a
    cut-short message (``"the file ends inside its pickled objects, at byte 1200"``); None for a
    file whose pickles are whole (what follows them is torch's to judge), and for any file that
    is no pickle stream (a zip, an HDF5 file)."""
    with open(path, "rb") as file:
        if not file.read(len(PICKLE_PROTOCOL)).startswith(PICKLE_PROTOCOL):
            return None
        # A map, not the file: a read of a length the file claims (say 2**40 bytes) stops at its
        # end instead of allocating that much first.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as stream:
            try:
                for _ in range(LEGACY_PICKLES):
                    for _ in pickletools.genops(stream):  # stops after the pickle's STOP
                        pass
            except ValueError:  # a truncated argument or opcode, or an opcode pickle lacks
                if stream.tell() >= len(stream):  # the decoder ran out of bytes: cut short
                    return f"the file ends inside its pickled objects, at byte {len(stream)}"
    return None
