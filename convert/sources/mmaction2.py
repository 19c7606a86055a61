"""mmaction2's own layouts, read without a rename table: mmaction2 1.x files (final norm
``backbone.norm3``) and the authors' Video-Swin files (``backbone.norm``, renamed to
``backbone.norm3``). A checkpoint no `detection.SOURCES` entry claims is read as one of these."""

from __future__ import annotations

from videoswin_tf.convert.sources.layout import SourceError, listing

AUTHORS_NORM = "backbone.norm."
MMACTION_NORM = "backbone.norm3."
# The final norm's naming, as `rename_final_norm` returns it, to the layout family it marks.
FAMILIES = {"norm": "authors' Video-Swin", "norm3": "mmaction2 1.x"}


def rename_final_norm(tensors: dict, notes: list[str]) -> tuple[dict, str | None]:
    """Rename ``backbone.norm.*`` to ``backbone.norm3.*`` (key order kept); return the tensors
    and which naming the file used (``"norm"``, ``"norm3"`` or None).

    Raises:
        SourceError: the file holds both namings.
    """
    authors = [key for key in tensors if key.startswith(AUTHORS_NORM)]
    mmaction = [key for key in tensors if key.startswith(MMACTION_NORM)]
    if authors and mmaction:
        raise SourceError(
            f"holds both {listing(authors)} and {listing(mmaction)}; the final norm "
            f"must be one or the other (authors' files use backbone.norm, mmaction2 1.x "
            f"backbone.norm3). Remove the stale copy and re-save"
        )
    if not authors:
        return tensors, "norm3" if mmaction else None
    renamed = {
        MMACTION_NORM + key[len(AUTHORS_NORM) :] if key.startswith(AUTHORS_NORM) else key: value
        for key, value in tensors.items()
    }
    notes.append(f"renamed {', '.join(sorted(authors))} to backbone.norm3.* (mmaction2 1.x name)")
    return renamed, "norm"
