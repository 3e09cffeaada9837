"""A tiny CURE-TSD tree in the released layout, for tests and the conformance kit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 32, 24
ANNOTATIONS = {
    "01_04.txt": "frameNumber_signType_llx_lly_lrx_lry_ulx_uly_urx_ury\n001_06_2_3_10_3_2_9_10_9\n003_14_20_4_28_4_20_12_28_12\n003_06_1_1_5_1_1_5_5_5\n",
    "01_01.txt": "001_13_0_0_4_0_0_4_4_4\n",
}


def flat_frame(value: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, dtype=np.uint8)


def write_mp4(path: Path, n_frames: int) -> None:
    """An MPEG-4 video whose frame i (0-based) is flat grey 40 * i."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(n_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(flat_frame(40 * i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_cure_tsd_tree(root: Path, video: bool = True, train: bool = True) -> dict[str, str]:
    """Frame folders ``01_04_00_00_00``, ``01_04_01_04_02`` (test) and
    (with ``train``) ``01_01_00_00_00`` (a train sequence) of 4 PNG frames
    (flat grey 10 * frame), with ``video`` the MP4 ``01_04_01_02_05.mp4`` of 4
    frames, and ``labels/``.
    Returns the datasets.yaml options."""
    from PIL import Image

    root = Path(root)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in ANNOTATIONS.items():
        (root / "labels" / name).write_text(text)
    for stem in ("01_04_00_00_00", "01_04_01_04_02", *(["01_01_00_00_00"] if train else [])):
        (root / stem).mkdir(exist_ok=True)
        for f in range(1, 5):
            Image.fromarray(flat_frame(10 * f)).save(root / stem / f"{f:03d}.png")
    if video:
        write_mp4(root / "01_04_01_02_05.mp4", 4)
    return {"root": str(root)}
