"""The named model configs, one JSON file each; installed as ``videoswin_tf.configs``."""
