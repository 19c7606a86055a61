"""From a canonical state dict to a Keras model: the `spec.ModelSpec` of a model and the Keras model
it builds, the key-to-variable `rules.RULES`, the architecture read off tensor shapes
(`inference`), and 2D ImageNet weights inflated to 3D (`inflation`).
"""
