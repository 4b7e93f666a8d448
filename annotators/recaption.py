"""Re-captioning: gather a sample's candidate captions, let CLIP score them, pick the one the shard gets.

Candidates, in this order (which is also the tie-breaking order):
1. `original`: the sample's own caption (`caption_original`);
2. `inherited`: captions of the duplicates it replaced (`captions_inherited`, in the dedup job's order);
3. `captioner`: the caption of a generative captioner (`annotators.captioner`);
4. `tags`: the top-k tags of a vocabulary, ranked by CLIP, joined by ", ".
Empty texts are left out and a text repeated later keeps its first origin, so an inherited caption equal to
the original stays `original`.

The rule (`choose_caption`): the original caption stays unless the best other candidate scores higher by at
least `margin` in cosine (image-caption similarity); a tie never replaces it. Differences within
`SCORE_TOLERANCE` (float32 rounding) count as equal, so a gain of exactly `margin` is enough. Among other candidates with
equal scores the earliest in the order above wins. A sample without an original caption gets its best
candidate, whatever the margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ORIGINAL = "original"
INHERITED = "inherited"
CAPTIONER = "captioner"
TAGS = "tags"
TAG_SEPARATOR = ", "
# Scores are stored with this many decimals: float32 cosines carry no more, and the JSON stays short.
SCORE_DECIMALS = 6
# Score differences this small are float32 rounding (cosines near 0.3 are exact to about 3e-8): a tie.
SCORE_TOLERANCE = 1e-6

TextEncoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    text: str
    origin: str  # original | inherited | captioner | tags
    source: str | None = None  # inherited: the replaced copy's sample_id; captioner: the model


def inherited_captions(value: str | None) -> list[tuple[str, str | None]]:
    """(caption, sample_id) pairs from the dedup job's `captions_inherited` JSON."""
    if not value:
        return []
    return [(item["caption"], item.get("sample_id")) for item in json.loads(value) if item.get("caption")]


def gather_candidates(
    original: str | None,
    inherited: str | None = None,
    generated: str | None = None,
    generated_by: str | None = None,
    tag_caption: str | None = None,
) -> list[Candidate]:
    """The candidates of one sample, in rule order, without empty or repeated texts."""
    ordered = [
        (original, ORIGINAL, None),
        *((caption, INHERITED, sample_id) for caption, sample_id in inherited_captions(inherited)),
        (generated, CAPTIONER, generated_by),
        (tag_caption, TAGS, None),
    ]
    seen: set[str] = set()
    candidates = []
    for text, origin, source in ordered:
        text = (text or "").strip()
        if text and text not in seen:
            seen.add(text)
            candidates.append(Candidate(text, origin, source))
    return candidates


def choose_caption(candidates: Sequence[Candidate], scores: Sequence[float], margin: float) -> int | None:
    """Index of the candidate the shard gets under the margin rule (module docstring); None without candidates."""
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    if not candidates:
        return None
    has_original = candidates[0].origin == ORIGINAL
    others = range(1 if has_original else 0, len(candidates))
    if not others:
        return 0
    # max() keeps the first of equal keys, which is the rule's tie-break.
    best = max(others, key=lambda i: scores[i])
    if not has_original:
        return best
    gain = float(scores[best]) - float(scores[0])
    return best if gain > SCORE_TOLERANCE and gain >= margin - SCORE_TOLERANCE else 0


def candidates_json(candidates: Sequence[Candidate], scores: Sequence[float]) -> str:
    """The manifest's `caption_candidates`: [{"text", "origin", "score", "source"}, ...] in rule order."""
    return json.dumps(
        [
            {"text": c.text, "origin": c.origin, "score": round(float(s), SCORE_DECIMALS), "source": c.source}
            for c, s in zip(candidates, scores)
        ],
        ensure_ascii=False,
    )


def load_vocabulary(vocabulary: Sequence[str] | str) -> list[str]:
    """Tags from a list or a text file (one a line, '#' starts a comment line), stripped, first copy kept."""
    if isinstance(vocabulary, str):
        lines = Path(vocabulary).read_text(encoding="utf-8").splitlines()
        vocabulary = [line for line in lines if not line.lstrip().startswith("#")]
    tags = [t.strip() for t in vocabulary]
    unique = list(dict.fromkeys(t for t in tags if t))
    if not unique:
        raise ValueError("the tag vocabulary is empty")
    return unique


class TagCaptioner:
    """Composes a caption from the `top_k` tags whose CLIP text embeddings are closest to the image's."""

    def __init__(self, tags: Sequence[str], tag_embeddings: np.ndarray, top_k: int):
        if len(tags) != len(tag_embeddings):
            raise ValueError(f"{len(tags)} tags but {len(tag_embeddings)} embeddings")
        self.tags = list(tags)
        self.tag_embeddings = np.asarray(tag_embeddings, dtype=np.float32)
        self.top_k = min(top_k, len(self.tags))

    @classmethod
    def from_encoder(cls, tags: Sequence[str], encode_texts: TextEncoder, prompt: str, top_k: int) -> TagCaptioner:
        """Encodes every tag once, inside `prompt` ("a photo of {}"): CLIP ranks prompts better than bare words."""
        return cls(tags, encode_texts([prompt.format(t) for t in tags]), top_k)

    def captions(self, image_embeddings: np.ndarray) -> list[str]:
        sims = np.asarray(image_embeddings, dtype=np.float32) @ self.tag_embeddings.T
        # A stable sort on the negated scores keeps vocabulary order among equal scores.
        top = np.argsort(-sims, axis=1, kind="stable")[:, : self.top_k]
        return [TAG_SEPARATOR.join(self.tags[j] for j in row) for row in top]
