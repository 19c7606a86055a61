"""vswin-convert: mmaction2 Video Swin checkpoints to Keras weights, with a parity gate.

Needs the ``convert`` extra (torch, mmaction2, mmengine, mmcv-lite, einops, click); the model
package ``videoswin_tf`` does not.
"""
