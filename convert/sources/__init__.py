"""Reading a checkpoint: the safe ``.pth`` loader (`checkpoint`), which brings every layout to
mmaction2 1.x keys; mmaction2's own layouts (`mmaction2`: 1.x and the authors' files, no rename
table); one module per other layout (`torchvision`, `imagenet_2d`), each a `layout.Source` with
its key-rename table; and `detection`, which lists those in the order they are tried. A new source
is one new module here and one row in `detection.SOURCES`.
"""
