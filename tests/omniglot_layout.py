"""Builds the original Omniglot layout from the shared real subset.

`../shared/data/omniglot/images_background_small1.zip` holds 5 alphabets;
tests split them into `images_background.zip` (pretraining) and
`images_evaluation.zip` (transfer) under `<root>/omniglot/`, as a user who
downloaded Omniglot would have them. The data is read, never copied into the
repository.
"""

import os
import zipfile

import pytest

SMALL1 = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    "shared",
    "data",
    "omniglot",
    "images_background_small1.zip",
)

needs_omniglot = pytest.mark.skipif(
    not os.path.exists(SMALL1), reason="shared Omniglot subset not present"
)


def build_omniglot(root, background_alphabets=3):
    """Writes <root>/omniglot/images_{background,evaluation}.zip; returns
    (background alphabets, evaluation alphabets)."""
    target = os.path.join(root, "omniglot")
    os.makedirs(target, exist_ok=True)
    with zipfile.ZipFile(SMALL1) as source:
        members = [m for m in source.namelist() if m.endswith(".png")]
        alphabets = sorted({m.split("/")[1] for m in members})
        split = {
            "images_background": alphabets[:background_alphabets],
            "images_evaluation": alphabets[background_alphabets:],
        }
        for archive, chosen in split.items():
            path = os.path.join(target, f"{archive}.zip")
            with zipfile.ZipFile(path, "w") as out:
                for member in members:
                    parts = member.split("/")
                    if parts[1] in chosen:
                        name = "/".join([archive, *parts[1:]])
                        out.writestr(name, source.read(member))
    return split["images_background"], split["images_evaluation"]
