"""Datasets are found by name in one registry: the built-in ones by their
own loader, every other name by the files fallback; a name that is not a
string is a mistake naming the setting and the known datasets."""

import pytest

from zapkeras.data import continual_sources
from zapkeras.data import embedded
from zapkeras.data import files
from zapkeras.data import omniglot
from zapkeras.data import registry
from zapkeras.data import sources
from zapkeras.errors import UsageError


def test_built_in_names_and_the_fallback():
    assert registry.names() == ("embedded", "omniglot")
    setting = "load_class_sets.name"
    assert registry.loader("embedded", setting) is embedded.load_embedded
    assert registry.loader("omniglot", setting) is omniglot.load_omniglot
    assert registry.loader("my-images", setting) is files.load_files


@pytest.mark.parametrize("name", [None, "", 3])
def test_a_name_that_is_no_string_names_the_setting(name):
    with pytest.raises(
        UsageError, match=r"load_class_sets.name = .*'embedded', 'omniglot'"
    ):
        sources.load_class_sets(name, "/nowhere")
    with pytest.raises(UsageError, match="continual_dataset.name"):
        continual_sources.continual_dataset(name, "/nowhere")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="embedded"):
        registry.register("embedded")(lambda *args: None)
    with pytest.raises(ValueError, match="fallback"):
        registry.register_fallback(lambda *args: None)


def test_a_missing_dataset_also_lists_the_known_names(tmp_path):
    with pytest.raises(UsageError, match="known by name: 'embedded'"):
        sources.load_class_sets("nope", str(tmp_path))


def test_files_need_a_data_directory():
    for name in ("omniglot", "my-images"):
        with pytest.raises(UsageError, match="--data_dir"):
            sources.load_class_sets(name, None)
        with pytest.raises(UsageError, match="--data_dir"):
            continual_sources.continual_dataset(name, None)
    with pytest.raises(UsageError, match="continual_dataset.image_size"):
        continual_sources.continual_dataset("embedded", None, image_size=0)
