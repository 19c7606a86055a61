"""The upstream code parity runs, never a copy of ours: mmaction2's ``SwinTransformer3D`` and
``I3DHead`` (`mmaction2`), mmaction2 inflating a 2D file (`mmaction2_inflation`), torchvision's
``SwinTransformer3d`` (`torchvision`, imported through `torchvision_shim`), mmaction2's test
transforms (`upstream_transforms`), and the test checkpoints those models make (`synthetic`).
`registry.REFERENCES` says which one parity runs for each kind of source.
"""
