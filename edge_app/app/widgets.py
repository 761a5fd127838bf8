"""What the app's screens share: the verdict colours, the widgets of `puf.kv` (Kivy loads it
as PufApp's own kv, before the screens' files) and images drawn into textures."""

from __future__ import annotations

import cv2
import numpy as np
from kivy.graphics.texture import Texture
from kivy.properties import ColorProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label

COLOURS = {  # verdict -> (background, text)
    "genuine": ((0.11, 0.56, 0.24, 1), (1, 1, 1, 1)),
    "counterfeit": ((0.78, 0.15, 0.15, 1), (1, 1, 1, 1)),
    "revoked": ((0.45, 0.09, 0.42, 1), (1, 1, 1, 1)),
    "unreadable": ((0.98, 0.68, 0.13, 1), (0.1, 0.1, 0.1, 1)),
}
OK_COLOUR, WARN_COLOUR, IDLE_COLOUR = (0.20, 0.75, 0.35, 1), (0.98, 0.68, 0.13, 1), (0.55, 0.58, 0.62, 1)


def to_texture(image: np.ndarray, texture: Texture | None = None) -> Texture:
    """A BGR or grey uint8 image in a texture (reused when its size matches, as for a
    camera stream: one upload a frame, no new GL object)."""
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    if texture is None or tuple(texture.size) != (width, height):
        texture = Texture.create(size=(width, height), colorfmt="rgb")
        texture.flip_vertical()  # image rows go top-down, GL's bottom-up
    texture.blit_buffer(np.ascontiguousarray(rgb).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    return texture


class TouchButton(Button):
    tint = ColorProperty((0.12, 0.44, 0.86, 1))


class Pill(Label):
    tint = ColorProperty((0.24, 0.27, 0.31, 1))


class Indicator(BoxLayout):
    name = StringProperty("")
    state_text = StringProperty("")
    tint = ColorProperty((0.24, 0.27, 0.31, 1))
