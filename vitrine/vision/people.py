"""People in a photo: MediaPipe 0.10.21's bundled pose landmarks and person segmentation (offline).

MediaPipe Pose finds one person per run, so several people are found by running it again with each
found person painted over, until it finds nobody new; a wide photo is then searched again in squares
along its width. When that finds nobody although the segmentation sees a person, the photo is looked
at once more, mirrored, then smaller. The selfie segmentation mask (all people) then gives each
person's pixels inside their box; where it misses the photo's tallest person (it favours one person close to the
camera), their pixels are drawn from their landmarks instead. MediaPipe graphs are not thread-safe: one lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vitrine.arrays import Array
from vitrine.errors import ModelUnavailable
from vitrine.logs import native_chatter_logged

log = logging.getLogger(__name__)
MAX_PEOPLE = 4
MIN_POSE_CONFIDENCE = 0.5
MIN_VISIBLE_LANDMARKS = 8
SEGMENT_THRESHOLD = 0.5
WINDOW_ASPECT = 1.25  # a photo this much wider than high is also searched in squares
MIN_SEGMENTED_SHARE = 0.05  # this much of the photo segmented as a person, and nobody found: look again
SECOND_LOOK_SCALE = 0.75
UNSEGMENTED = 0.1  # less than this share of a person's box segmented: the segmentation did not see them
# Body parts drawn for a person the segmentation missed: landmark pairs, and the line's width in shoulder widths.
LIMBS = (((11, 12), 0.3), ((11, 23), 0.3), ((12, 24), 0.3), ((23, 24), 0.3), ((11, 13), 0.35), ((13, 15), 0.3),
         ((12, 14), 0.35), ((14, 16), 0.3), ((23, 25), 0.45), ((25, 27), 0.35), ((24, 26), 0.45), ((26, 28), 0.35),
         ((27, 29), 0.25), ((29, 31), 0.25), ((27, 31), 0.25), ((28, 30), 0.25), ((30, 32), 0.25), ((28, 32), 0.25))
# Landmark indices with left and right exchanged (nose, eyes, ears, mouth, arms, hands, legs, feet).
MIRRORED = np.array([0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, *[i + (1 if i % 2 else -1) for i in range(11, 33)]])


@dataclass(frozen=True)
class Person:
    landmarks: Array  # (33, 3): x, y in pixels of the photo, visibility in [0, 1]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 around the visible landmarks
    mask: Array  # (H, W) bool: this person's pixels (segmentation inside their widened box)

    def point(self, index: int) -> tuple[float, float, float]:
        x, y, v = self.landmarks[index]
        return float(x), float(y), float(v)


class PeopleDetector:
    def __init__(self) -> None:
        self._pose: Any = None
        self._segmenter: Any = None
        self._lock = threading.Lock()
        self._settled = False  # MediaPipe has printed what it prints once (graphs started, somebody found)

    def _load(self) -> None:
        if self._pose is not None:
            return
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise ModelUnavailable("mediapipe 0.10.21 is not installed (see the README)") from exc
        # model_complexity=1 is the pose model the wheel carries; others would be downloaded.
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                            min_detection_confidence=MIN_POSE_CONFIDENCE)
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def detect(self, rgb: Array) -> list[Person]:
        """(H, W, 3) uint8 RGB to the people in it, largest first."""
        height, width = rgb.shape[:2]
        with self._lock, self._chatter_logged():
            self._load()
            everyone = self._segment(rgb)
            canvas = rgb.copy()
            people: list[Person] = []
            for window in _windows(width, height):
                self._find(canvas, window, people, everyone)
                if len(people) >= MAX_PEOPLE:
                    break
            if not people and isinstance(everyone, np.ndarray) and everyone.mean() >= MIN_SEGMENTED_SHARE:
                people += self._second_look(rgb, everyone)
            people = _drawn_where_unsegmented(people, width, height)
            self._settled = self._settled or bool(people)
        return sorted(people, key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))

    def segment(self, rgb: Array) -> Array | None:
        """(H, W) bool: the pixels of anybody in the photo; None when the segmentation gives nothing."""
        with self._lock, self._chatter_logged():
            self._load()
            return self._segment(rgb)

    def _chatter_logged(self) -> contextlib.AbstractContextManager[None]:
        """MediaPipe's own log lines (its graphs starting, its first landmarks) go to the debug log, not around
        a CLI's output or the server's JSON lines. Once they are out, stderr is left alone."""
        return contextlib.nullcontext() if self._settled else native_chatter_logged(log)

    def _segment(self, rgb: Array) -> Array | None:
        segmentation = self._segmenter.process(rgb).segmentation_mask
        return None if segmentation is None else segmentation > SEGMENT_THRESHOLD

    def _find(self, canvas: Array, window: tuple[int, int, int, int], people: list[Person], everyone: Any) -> None:
        """Runs the pose model on one window of the canvas until it finds nobody new, painting over each
        person found (the model finds one person per run). Found people are added to `people`."""
        height, width = canvas.shape[:2]
        x0, y0, x1, y1 = window
        while len(people) < MAX_PEOPLE:
            result = self._pose.process(np.ascontiguousarray(canvas[y0:y1, x0:x1]))
            if result.pose_landmarks is None:
                return
            marks = np.array([[x0 + lm.x * (x1 - x0), y0 + lm.y * (y1 - y0), lm.visibility]
                              for lm in result.pose_landmarks.landmark], dtype=np.float32)
            visible = marks[marks[:, 2] > 0.5]
            if len(visible) < MIN_VISIBLE_LANDMARKS:
                return
            box = _landmark_box(visible, width, height)
            if any(_overlap(box, p.box) > 0.6 for p in people):
                return  # the same person again: nothing new to find
            people.append(Person(landmarks=marks, box=box, mask=_person_mask(everyone, box, width, height)))
            px0, py0, px1, py1 = _widen(box, width, height, 0.15)
            canvas[py0:py1, px0:px1] = 127  # paint over: the next run finds somebody else


    def _second_look(self, rgb: Array, everyone: Array) -> list[Person]:
        """The pose model's person detector sometimes misses somebody plain to see (a full-length coat
        under a fur hat) whom it finds in the mirrored or a smaller photo. On ccp's street photos this
        found the one person of 787 photos the first look missed."""
        height, width = rgb.shape[:2]
        size = (max(1, int(width * SECOND_LOOK_SCALE)), max(1, int(height * SECOND_LOOK_SCALE)))
        smaller = Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)
        for mirrored in (True, False):
            image = rgb[:, ::-1] if mirrored else np.asarray(smaller)
            scale = 1.0 if mirrored else SECOND_LOOK_SCALE
            result = self._pose.process(np.ascontiguousarray(image))
            if result.pose_landmarks is None:
                continue
            h, w = image.shape[:2]
            marks = np.array([[lm.x * w / scale, lm.y * h / scale, lm.visibility]
                              for lm in result.pose_landmarks.landmark], dtype=np.float32)
            if mirrored:  # back to the photo's sides: the mirror's left shoulder is the person's right
                marks = marks[MIRRORED]
                marks[:, 0] = width - marks[:, 0]
            visible = marks[marks[:, 2] > 0.5]
            if len(visible) >= MIN_VISIBLE_LANDMARKS:
                box = _landmark_box(visible, width, height)
                return [Person(landmarks=marks, box=box, mask=_person_mask(everyone, box, width, height))]
        return []


def _windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Where to look: the whole photo, then, in a wide photo, squares along its width (half overlapping).
    The pose model's person detector misses people seen from the waist up side by side in a wide photo
    (two men in suits) that it finds in a square around each of them. People in a tall photo stand one
    beside another too, so it is only searched whole."""
    windows = [(0, 0, width, height)]
    if width >= WINDOW_ASPECT * height:
        steps = int(np.ceil((width - height) / (height / 2))) + 1
        for start in np.linspace(0, width - height, steps).astype(int).tolist():
            windows.append((start, 0, start + height, height))
    return windows


def _landmark_box(points: Array, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = points[:, :2].min(0)
    x1, y1 = points[:, :2].max(0)
    return (max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))


def _widen(box: tuple[int, int, int, int], width: int, height: int, share: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * share, (y1 - y0) * share
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(width, int(x1 + dx)), min(height, int(y1 + dy)))


def _person_mask(everyone: Any, box: tuple[int, int, int, int], width: int, height: int) -> Array:
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = _widen(box, width, height, 0.25)
    if isinstance(everyone, np.ndarray):
        mask[y0:y1, x0:x1] = everyone[y0:y1, x0:x1]
    else:
        mask[y0:y1, x0:x1] = True
    return mask


def _drawn_where_unsegmented(people: list[Person], width: int, height: int) -> list[Person]:
    """The segmentation sees one person close to the camera best. In a street photo the others it misses are
    passers-by, whose garments are not the look (ccp: 80 people of 901, all shorter than someone it saw). But it
    can miss the tallest person of the photo too (`basketball1.png`, the man on the left, with no garment but
    his shoes). The tallest people it missed get a body drawn from their landmarks."""
    tallest = max((p.box[3] - p.box[1] for p in people), default=0)
    found = []
    for person in people:
        x0, y0, x1, y1 = person.box
        seen = float(person.mask[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0
        if seen < UNSEGMENTED and y1 - y0 >= 0.9 * tallest:
            person = Person(landmarks=person.landmarks, box=person.box,
                            mask=_body_mask(person.landmarks, width, height))
        found.append(person)
    return found


def _body_mask(landmarks: Array, width: int, height: int) -> Array:
    """(H, W) bool: a body drawn from the landmarks, limbs as thick lines scaled by the shoulders' width (or half
    the torso's length, seen from the side), the head a disc."""
    points = landmarks[:, :2]
    shoulders = float(np.linalg.norm(points[11] - points[12]))
    torso = float(np.linalg.norm((points[11] + points[12]) / 2 - (points[23] + points[24]) / 2))
    scale = max(shoulders, 0.5 * torso, 8.0)
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    torso_corners = [tuple(points[i]) for i in (11, 12, 24, 23)]
    if min(landmarks[[11, 12, 23, 24], 2]) >= 0.3:
        draw.polygon([(float(x), float(y)) for x, y in torso_corners], fill=1)
    for (a, b), share in LIMBS:
        if min(landmarks[a, 2], landmarks[b, 2]) >= 0.3:
            draw.line([tuple(map(float, points[a])), tuple(map(float, points[b]))], fill=1,
                      width=max(1, int(share * scale)), joint="curve")
    if landmarks[0, 2] >= 0.3:
        (x, y), r = points[0], 0.45 * scale
        draw.ellipse([float(x - r), float(y - r), float(x + r), float(y + r)], fill=1)
    mask: Array = np.asarray(canvas, dtype=bool)
    return mask


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0
