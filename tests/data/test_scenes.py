"""The drawn scenes and scikit-learn's digits: seeded, split, and their answers true."""

import torch

from parrot.data.scenes import (
    COLOURS,
    HELD_OUT,
    KINDS,
    Shape,
    draw_shapes,
    place_shapes,
    questions,
    scenes,
    sklearn_digits,
)


def test_the_same_seed_draws_the_same_scenes():
    one, two = scenes("train", 30, seed=4), scenes("train", 30, seed=4)
    assert all(torch.equal(a.pixels, b.pixels) and a.questions == b.questions
               for a, b in zip(one, two, strict=True))
    other = scenes("test", 30, seed=4)
    assert not any(torch.equal(a.pixels, b.pixels) for a, b in zip(one, other, strict=True))


def test_training_scenes_never_hold_a_held_out_pair_and_combo_scenes_ask_about_one():
    for example in scenes("train", 300, seed=1):
        assert not any(f"a {c} {s}" in example.caption for c, s in HELD_OUT)
    for example in scenes("combo", 60, seed=1):
        pairs = [(c, s) for c, s in HELD_OUT if f"a {c} {s}" in example.caption]
        assert pairs and example.questions
        for qa in example.questions:
            assert any(c in qa.question or s in qa.question for c, s in pairs)


def test_every_kind_of_question_is_asked():
    kinds = {qa.kind for e in scenes("train", 200, seed=2) for qa in e.questions}
    assert kinds == set(KINDS)


def test_answers_are_read_from_the_scene_itself():
    import random

    rng = random.Random(0)
    shapes = [Shape("circle", "red", 6, 8, 8), Shape("square", "blue", 25, 20, 10)]
    pixels = draw_shapes(shapes)
    assert torch.allclose(pixels[:, 8, 6], torch.tensor(COLOURS["red"]) / 255.0)
    assert torch.allclose(pixels[:, 20, 25], torch.tensor(COLOURS["blue"]) / 255.0)
    asked = {q.question: q.answer for _ in range(20)
             for q in questions(rng, shapes, [("red", "circle"), ("blue", "square")])}
    assert asked.get("What colour is the square?", "blue") == "blue"
    assert asked.get("Is the red circle on the left or the right?", "left") == "left"
    assert asked.get("Is the blue square on the left or the right?", "right") == "right"
    assert asked.get("How many objects are there?", "2") == "2"


def test_placed_shapes_do_not_overlap():
    import random

    rng = random.Random(3)
    for _ in range(50):
        placed = place_shapes(rng, [("red", "circle")] * 4)
        if placed is None:
            continue
        for i, a in enumerate(placed):
            for b in placed[i + 1:]:
                assert abs(a.x - b.x) > (a.size + b.size) // 2 or \
                    abs(a.y - b.y) > (a.size + b.size) // 2


def test_sklearn_digits_have_a_fixed_disjoint_split():
    train, train_labels = sklearn_digits("train")
    test, test_labels = sklearn_digits("test")
    assert (len(train), len(test)) == (1347, 450) and train.shape[1:] == (3, 32, 32)
    again, again_labels = sklearn_digits("test")
    assert torch.equal(test, again) and test_labels == again_labels
    small = lambda x: x[:, 0, ::4, ::4].reshape(len(x), -1)  # noqa: E731 - back to 8 x 8
    overlap = int((torch.cdist(small(test), small(train)) == 0).any(dim=1).sum())
    assert overlap <= 5  # the dataset has a few duplicate pictures, never a shared index
    assert sorted(set(test_labels)) == list(range(10))
