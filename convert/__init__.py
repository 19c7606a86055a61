"""vswin-convert: PyTorch Video Swin checkpoints to Keras weights, with a parity gate.

Needs the ``convert`` extra (torch, mmaction2, mmengine, mmcv-lite, einops, click); the model
package ``videoswin_tf`` does not, and never imports this one. The conversion's phases are in
`converter`; the parts it is made of are grouped by what they do: ``sources`` (reading a
checkpoint), ``configs`` (reading a config), ``mapping`` (the model a spec describes and where each
tensor goes), ``references`` (the upstream models parity runs) and ``outputs`` (weight files,
release, export).
"""
