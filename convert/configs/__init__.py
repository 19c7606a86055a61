"""Reading the config a user names: a shipped named config or one of our JSON files (through
`videoswin_tf.named_configs`, the reader the presets share), or an mmaction2 ``.py`` config read
as data (`mmaction2_reader`); `resolve` makes each a `ModelSpec`.
"""
