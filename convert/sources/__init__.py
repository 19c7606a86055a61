"""Reading a checkpoint: the safe ``.pth`` loader (`checkpoint`), which brings every layout to
mmaction2 1.x keys, and one module per non-mmaction2 layout (`torchvision`, `imagenet_2d`), each a
`layout.Source` with its key-rename table; `detection` lists them in the order they are tried. A
new source is one new module here and one row in `detection.SOURCES`.
"""
