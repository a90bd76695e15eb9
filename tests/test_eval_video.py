"""``eval --video``: each task renders through its own camera by default (a three-quarter view of
the table, a camera following MobilePick's base, Nav's top view) or through any camera of its model
(``--camera``, here ``run_episodes(video_camera=...)``); an unknown camera is a one-line error
naming the model's cameras; the overlay's lines stay legible in the encoded video."""

import cv2
import numpy as np
import pytest

from robolearn.envs import get_task
from robolearn.evaluation import LINE_HEIGHT, VideoError, draw_overlay, run_episodes, video_camera

from policies import make_policy

#: task -> its default camera and another camera of its model
CAMERAS = {"robolearn/Reach-v0": ("three_quarter", "front"), "robolearn/Push-v0": ("three_quarter", "front"),
           "robolearn/PickPlace-v0": ("three_quarter", "front"), "robolearn/MobilePick-v0": ("follow", "top"),
           "robolearn/Nav-v0": ("top", None)}


def short_env(task):
    return get_task(task).env_cls(num_envs=1, nthread=1, seed=0, episode_seconds=0.2)


def frames_of(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def record(env, path, camera=None):
    dims = {group: layout.size for group, layout in env.obs_layout.items()}
    policy = make_policy(dims, env.single_action_space.shape[0], actor_hidden=[8], critic_hidden=[8])
    result = run_episodes(policy, env, 1, video=path, video_camera=camera)
    frames = frames_of(path)
    assert len(frames) == result["video_frames"] == env.max_episode_steps + 1  # and the final frame
    return frames


@pytest.mark.parametrize("task", list(CAMERAS))
def test_each_task_renders_its_own_camera_and_any_other(task, tmp_path):
    default, other = CAMERAS[task]
    env = short_env(task)
    assert video_camera(env) == default
    view = record(env, tmp_path / "default.mp4")
    assert view[0].shape == (480, 480, 3) and view[0].std() > 10
    if other is None:
        return
    assert video_camera(env, other) == other
    other_view = record(env, tmp_path / "other.mp4", camera=other)
    below_overlay = slice(4 * LINE_HEIGHT + 20, None)
    difference = np.abs(view[0][below_overlay].astype(int) - other_view[0][below_overlay].astype(int)).mean()
    assert difference > 20, "the two cameras should see the scene differently"


def test_an_unknown_camera_is_a_one_line_error_naming_the_cameras(tmp_path):
    env = short_env("robolearn/MobilePick-v0")
    with pytest.raises(VideoError) as err:
        record(env, tmp_path / "x.mp4", camera="side")
    assert str(err.value) == "camera 'side': the task's model has no such camera (its cameras: top, follow)"
    assert not (tmp_path / "x.mp4").exists()


def test_the_overlay_lines_are_legible_in_the_encoded_video(tmp_path):
    """Each line on a dark band at a fixed slot: the band stays dark between the glyphs, and the
    step line, whose number changes every frame, decodes as that number drawn alone, not as
    another (written straight on the floor, the encoder smeared each number into the next frames)."""
    env = short_env("robolearn/MobilePick-v0")
    frames = record(env, tmp_path / "overlay.mp4", camera="top")  # a light, textured floor under the text

    def step_line(image):
        return image[:LINE_HEIGHT + 4, :70].mean(axis=-1).ravel()

    for step, frame in enumerate(frames[:-1]):  # the last is the episode's final frame
        band = frame[:4 * LINE_HEIGHT + 8, :100].astype(int)
        assert np.median(band) < 50  # dark behind the text
        assert (band.max(axis=-1) > 200).mean() > 0.03  # white text on it
        match = []
        for number in range(6):
            ideal = np.zeros_like(frame)
            draw_overlay(ideal, [f"step {number}"])
            match.append(np.corrcoef(step_line(frame), step_line(ideal))[0, 1])
        assert match[step] > 0.96 and int(np.argmax(match)) == step, np.round(match, 3)
