"""What the converter writes: files that are complete or absent (`atomic`), the weights file and
its write check (`weights`), the input pipeline stored on it (`preprocessing`), the release with
its manifest and model zoo (`release`), and SavedModel/ONNX exports (`export`).
"""
