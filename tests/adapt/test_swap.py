from torch import nn

from parrot.adapt.swap import replace_modules


def test_replace_modules_swaps_selected_children_in_model_order():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.Linear(2, 3)))
    names = replace_modules(model, lambda n, m: isinstance(m, nn.Linear),
                            lambda n, m: nn.Identity())
    assert names == ["0", "2.0"]
    assert isinstance(model[0], nn.Identity) and isinstance(model[2][0], nn.Identity)
    assert isinstance(model[1], nn.ReLU)


def test_a_wrapper_holding_the_original_is_not_visited_again():
    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

    model = nn.Sequential(nn.Linear(2, 2))
    replace_modules(model, lambda n, m: isinstance(m, nn.Linear), lambda n, m: Wrap(m))
    assert isinstance(model[0], Wrap) and isinstance(model[0].inner, nn.Linear)
