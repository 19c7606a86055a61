"""Memory of cutting a video's views does not grow with the video's length (issue 18)."""

import subprocess
import sys

from video_files import encode

# Cuts the K400 4x3 views of argv[1] and prints the process's peak resident memory (VmHWM,
# kB) and the frames counted.
PEAK_SCRIPT = """
import sys
from videoswin_tf.video import video_views, view_pipeline
views = video_views(sys.argv[1], view_pipeline("swin_t_k400"))
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(peak, views.num_frames)
"""


def peak_kb(path) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    peak, frames = done.stdout.split()
    return int(peak), int(frames)


def test_a_ten_minute_video_peaks_within_200_mb_of_a_twenty_second_one(tmp_path):
    """25 fps at 64x48, resized to 299x224 for the views (200 kB a frame): keeping every
    frame, the 10-minute video would need 3 GB more than the 20 s one."""
    short = encode(tmp_path / "short.mp4", 20 * 25, 64, 48)
    long = encode(tmp_path / "long.mp4", 10 * 60 * 25, 64, 48)
    short_peak, short_frames = peak_kb(short)
    long_peak, long_frames = peak_kb(long)
    assert (short_frames, long_frames) == (500, 15000)
    assert long_peak - short_peak < 200 * 1024, (short_peak, long_peak)
