import pytest

from gradprobe._registry import Registry
from gradprobe.errors import GradprobeError, UnknownNameError


def test_register_get_names_and_pattern():
    reg = Registry("widget")
    reg.register("alpha", 1)

    @reg.register("beta_one")
    def beta():
        return 2

    assert reg.get("alpha") == 1
    assert reg.get("beta_one")() == 2
    assert reg.names() == ["alpha", "beta_one"]
    assert reg.names("beta*") == ["beta_one"]
    assert "alpha" in reg and len(reg) == 2


def test_duplicate_name_is_an_error():
    reg = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(GradprobeError, match="already registered"):
        reg.register("alpha", 2)


def test_unknown_name_suggests_close_match_and_lists_all():
    reg = Registry("widget")
    reg.register("kaiming_normal", 1)
    reg.register("xavier_normal", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("kaiming_normel")
    message = str(info.value)
    assert "Did you mean 'kaiming_normal'" in message
    assert "xavier_normal" in message
    assert isinstance(info.value, LookupError)


def test_none_is_a_registrable_value():
    reg = Registry("widget")
    assert reg.register("nothing", None) is None
    assert "nothing" in reg and reg.get("nothing") is None
