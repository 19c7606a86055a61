"""Command-line tools of the model package (need the ``video`` extra)."""
