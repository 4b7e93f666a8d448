"""Sequence builder: (caption token ids, image, task) -> the packed token layout the model trains on.

A sample is a list of segments. `SequenceBuilder` makes the standard samples and `pack` lays any
samples out as one packed sequence with roles, 3-D RoPE positions, mask fields, next-token labels and
flow-matching noise:

    text-to-image           caption <img> [noisy] </img>
    ... with clean copy     caption <img> [noisy] </img> <img> [clean copy] </img>
    image-to-text           <img> [clean] </img> caption <eos>          (CE on caption and <eos>)
    text only               text <eos>                                  (CE on every token)

Position rules (one T counter per sample, starting at 0): each text token advances T by 1 with
H = W = 0; all patches of an image share T = T(<img>) + 1 with H, W = row, col on the token grid;
</img> takes the next T. A clean copy replays its noisy twin's bracket at the same T/H/W (markers
included), so tokens after it sit where they would if the generated image had been given once.

Pixels are (3, H, W) floats in [-1, 1] with H, W multiples of the token patch (32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum, IntEnum

import torch

from model.config import NeoConfig
from model.flow import sample_timesteps
from model.mask import NO_IMAGE, MaskFields

IGNORE_INDEX = -100


class TokenRole(IntEnum):
    TEXT = 0
    MARKER = 1  # <img> or </img>
    CLEAN_IMAGE = 2  # patch of a condition image or clean copy: understanding stream
    NOISY_IMAGE = 3  # patch of an image being generated: generation stream


class Task(str, Enum):
    TEXT_TO_IMAGE = "t2i"
    IMAGE_TO_TEXT = "i2t"
    TEXT_ONLY = "text"


@dataclass(frozen=True)
class Text:
    ids: Sequence[int]
    supervised: bool = False  # the model is trained (CE) to predict these tokens


@dataclass(frozen=True)
class Image:
    pixels: torch.Tensor  # (3, H, W) in [-1, 1]
    noisy: bool = (
        False  # True: generated (generation stream, MSE); False: condition (understanding)
    )


@dataclass(frozen=True)
class CleanCopy:
    """`<img>[clean]</img>` of the sample's latest noisy image, replayed at that image's positions."""


Segment = Text | Image | CleanCopy


@dataclass
class PackedBatch:
    """One packed sequence of L tokens holding one or more samples (all tensors on one device)."""

    input_ids: torch.Tensor  # (L,) long; token id for text/markers, pad id at image patches
    roles: torch.Tensor  # (L,) long TokenRole
    positions: torch.Tensor  # (3, L) long T/H/W
    sample_ids: torch.Tensor  # (L,) long
    image_ids: torch.Tensor  # (L,) long index into `images`, NO_IMAGE for text/markers
    twin_of: torch.Tensor  # (L,) long: clean-copy patches hold their noisy twin's image id
    labels: torch.Tensor  # (L,) long: token to predict at this position, IGNORE_INDEX if none
    images: list[torch.Tensor]  # by image id, (3, H, W) clean pixels in [-1, 1]
    noisy_image_ids: torch.Tensor  # (M,) long: generated images, in sequence order
    timesteps: torch.Tensor  # (M,) float t per generated image
    noise: list[torch.Tensor]  # (M,) eps per generated image, each (3, H, W)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_samples(self) -> int:
        return int(self.sample_ids.max()) + 1 if len(self) else 0

    @property
    def mask_fields(self) -> MaskFields:
        return MaskFields(
            t_index=self.positions[0],
            sample_id=self.sample_ids,
            image_id=self.image_ids,
            twin_of=self.twin_of,
            noisy=self.roles == TokenRole.NOISY_IMAGE,
        )

    def to(self, device: torch.device | str) -> PackedBatch:
        moved = {
            name: value.to(device)
            for name, value in vars(self).items()
            if isinstance(value, torch.Tensor)
        }
        return replace(
            self,
            **moved,
            images=[image.to(device) for image in self.images],
            noise=[eps.to(device) for eps in self.noise],
        )


def image_grid_positions(rows: int, cols: int, t_index: int) -> torch.Tensor:
    """(3, rows * cols) positions of one image's patches, row-major: T constant, H = row, W = col."""
    row = torch.arange(rows).repeat_interleave(cols)
    col = torch.arange(cols).repeat(rows)
    return torch.stack((torch.full_like(row, t_index), row, col))


@dataclass
class _Token:
    input_id: int
    role: TokenRole
    t: int
    h: int = 0
    w: int = 0
    image_id: int = NO_IMAGE
    twin_of: int = NO_IMAGE
    supervised: bool = False


class SequenceBuilder:
    """Builds samples for the three tasks and packs samples into a `PackedBatch`."""

    def __init__(self, config: NeoConfig) -> None:
        self.config = config

    # Samples -------------------------------------------------------------------------------

    def text_to_image(
        self,
        caption_ids: Sequence[int],
        image: torch.Tensor,
        *,
        clean_copy: bool = False,
        drop_caption: bool = False,
    ) -> list[Segment]:
        """`caption <img>[noisy]</img>`.

        `drop_caption` makes the unconditional sample classifier-free guidance needs; the trainer sets
        it for 10% of text-to-image samples. `clean_copy` appends `<img>[clean copy]</img>`.
        """
        segments: list[Segment] = [
            Text([] if drop_caption else caption_ids),
            Image(image, noisy=True),
        ]
        if clean_copy:
            segments.append(CleanCopy())
        return segments

    def image_to_text(
        self, image: torch.Tensor, caption_ids: Sequence[int], prompt_ids: Sequence[int] = ()
    ) -> list[Segment]:
        """`<img>[clean]</img> prompt caption <eos>` with CE on caption and <eos>."""
        return [
            Image(image),
            Text(prompt_ids),
            Text([*caption_ids, self.config.eos_id], supervised=True),
        ]

    def text_only(self, ids: Sequence[int]) -> list[Segment]:
        """`text <eos>` with CE on every token."""
        return [Text([*ids, self.config.eos_id], supervised=True)]

    def sample(
        self, task: Task | str, caption_ids: Sequence[int], image: torch.Tensor | None
    ) -> list[Segment]:
        """The standard sample of `task` for one caption/image pair."""
        task = Task(task)
        if task is Task.TEXT_ONLY:
            return self.text_only(caption_ids)
        if image is None:
            raise ValueError(f"task {task.value} needs an image")
        if task is Task.TEXT_TO_IMAGE:
            return self.text_to_image(caption_ids, image)
        return self.image_to_text(image, caption_ids)

    def image_generation_prompt(self, caption_ids: Sequence[int]) -> list[Segment]:
        """`caption <img>`: the prefix cached before denoising (empty caption = unconditional)."""
        return [Text(caption_ids), Text([self.config.img_start_id])]

    # Packing -------------------------------------------------------------------------------

    def pack(
        self, samples: Sequence[Sequence[Segment]], generator: torch.Generator | None = None
    ) -> PackedBatch:
        """Lay samples out back to back; draw t ~ sigmoid(N(-0.8, 0.8)) and eps per generated image."""
        tokens: list[_Token] = []
        sample_ids: list[int] = []
        images: list[torch.Tensor] = []
        noisy_image_ids: list[int] = []
        labels: list[int] = []
        for sample_id, segments in enumerate(samples):
            sample_tokens = self._layout_sample(segments, images, noisy_image_ids)
            tokens.extend(sample_tokens)
            sample_ids.extend([sample_id] * len(sample_tokens))
            labels.extend(_next_token_labels(sample_tokens))

        timesteps = sample_timesteps(len(noisy_image_ids), generator)
        noise = [torch.randn(images[i].shape, generator=generator) for i in noisy_image_ids]

        def column(name: str) -> torch.Tensor:
            return torch.tensor([getattr(token, name) for token in tokens], dtype=torch.long)

        return PackedBatch(
            input_ids=column("input_id"),
            roles=column("role"),
            positions=torch.stack((column("t"), column("h"), column("w"))),
            sample_ids=torch.tensor(sample_ids, dtype=torch.long),
            image_ids=column("image_id"),
            twin_of=column("twin_of"),
            labels=torch.tensor(labels, dtype=torch.long),
            images=images,
            noisy_image_ids=torch.tensor(noisy_image_ids, dtype=torch.long),
            timesteps=timesteps,
            noise=noise,
        )

    def _layout_sample(
        self, segments: Sequence[Segment], images: list[torch.Tensor], noisy_image_ids: list[int]
    ) -> list[_Token]:
        """Tokens of one sample; appends its images (and generated-image ids) to the shared lists."""
        tokens: list[_Token] = []
        next_t = 0
        latest_noisy: tuple[int, int] | None = None  # (image id, T of its <img>)
        for segment in segments:
            if isinstance(segment, Text):
                for token_id in segment.ids:
                    role = TokenRole.MARKER if self._is_marker(token_id) else TokenRole.TEXT
                    tokens.append(_Token(token_id, role, next_t, supervised=segment.supervised))
                    next_t += 1
            elif isinstance(segment, Image):
                image_id = len(images)
                images.append(self._checked(segment.pixels))
                if segment.noisy:
                    noisy_image_ids.append(image_id)
                    latest_noisy = (image_id, next_t)
                role = TokenRole.NOISY_IMAGE if segment.noisy else TokenRole.CLEAN_IMAGE
                tokens.extend(self._image_bracket(segment.pixels, image_id, role, next_t))
                next_t += 3
            elif isinstance(segment, CleanCopy):
                if latest_noisy is None:
                    raise ValueError("CleanCopy needs a noisy image earlier in its sample")
                twin_id, bracket_t = latest_noisy
                image_id = len(images)
                images.append(images[twin_id])
                tokens.extend(
                    self._image_bracket(
                        images[twin_id], image_id, TokenRole.CLEAN_IMAGE, bracket_t, twin_of=twin_id
                    )
                )
            else:
                raise TypeError(f"unknown segment {segment!r}")
        return tokens

    def _image_bracket(
        self,
        pixels: torch.Tensor,
        image_id: int,
        role: TokenRole,
        start_t: int,
        twin_of: int = NO_IMAGE,
    ) -> list[_Token]:
        """`<img>` at start_t, patches at start_t + 1 (row-major), `</img>` at start_t + 2."""
        patch = self.config.token_patch
        rows, cols = pixels.shape[1] // patch, pixels.shape[2] // patch
        patches = [
            _Token(self.config.pad_id, role, start_t + 1, row, col, image_id, twin_of)
            for row in range(rows)
            for col in range(cols)
        ]
        return [
            _Token(self.config.img_start_id, TokenRole.MARKER, start_t),
            *patches,
            _Token(self.config.img_end_id, TokenRole.MARKER, start_t + 2),
        ]

    def _is_marker(self, token_id: int) -> bool:
        return token_id in (self.config.img_start_id, self.config.img_end_id)

    def _checked(self, pixels: torch.Tensor) -> torch.Tensor:
        patch = self.config.token_patch
        if pixels.dim() != 3 or pixels.shape[0] != 3:
            raise ValueError(f"expected pixels (3, H, W), got {tuple(pixels.shape)}")
        if pixels.shape[1] % patch or pixels.shape[2] % patch:
            raise ValueError(
                f"image sides must be multiples of {patch}, got {tuple(pixels.shape[1:])}"
            )
        return pixels


def _next_token_labels(tokens: Sequence[_Token]) -> list[int]:
    """labels[i] = id of token i + 1 when that token is supervised text, else IGNORE_INDEX."""
    labels = [IGNORE_INDEX] * len(tokens)
    for i in range(len(tokens) - 1):
        if tokens[i + 1].supervised:
            labels[i] = tokens[i + 1].input_id
    return labels
