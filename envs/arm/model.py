"""Compose the arm (``arm.xml``) into a scene: the scene's ``arm_mount`` site carries the arm.

The arm file's ``arm_base`` body is inserted beside the mount site (at the site's position, in
the site's parent body, so a mobile base carries it) and its ``default``, ``contact``,
``equality``, ``actuator`` and ``sensor`` sections are merged into the scene's; names are kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources

import mujoco

ARM_JOINTS = ("j1_pan", "j2_shoulder", "j3_elbow", "j4_wrist", "j5_roll")
ARM_BODIES = ("arm_base", "link1", "link2", "link3", "link4", "hand", "finger_l", "finger_r")
FINGER_JOINTS = ("finger_l", "finger_r")
FINGER_OPEN = 0.04  # slide travel of each finger, metres (gap 8 cm fully open)
_MERGED = ("default", "contact", "equality", "actuator", "sensor")


def _read(package: str, name: str) -> ET.Element:
    return ET.fromstring(resources.files(package).joinpath(name).read_text())


def compose_xml(scene_package: str, scene_file: str, mount: str = "arm_mount") -> str:
    """MJCF text of the scene with the arm attached at its ``mount`` site."""
    scene, arm = _read(scene_package, scene_file), _read("robolearn.envs.arm", "arm.xml")
    parents = {child: parent for parent in scene.iter() for child in parent}
    site = next((s for s in scene.iter("site") if s.get("name") == mount), None)
    if site is None:
        raise ValueError(f"{scene_file}: no site named {mount!r} to mount the arm on")
    base = arm.find("worldbody/body")
    base.set("pos", site.get("pos", "0 0 0"))
    parent = parents[site]
    parent.insert(list(parent).index(site) + 1, base)
    for section in _MERGED:
        src = arm.find(section)
        if src is None:
            continue
        dst = scene.find(section)
        if dst is None:
            dst = ET.SubElement(scene, section)
        dst.extend(list(src))
    return ET.tostring(scene, encoding="unicode")


def build_model(scene_package: str, scene_file: str, mount: str = "arm_mount") -> mujoco.MjModel:
    """The compiled scene ``scene_file`` of ``scene_package`` with the arm at its ``mount`` site."""
    return mujoco.MjModel.from_xml_string(compose_xml(scene_package, scene_file, mount))
