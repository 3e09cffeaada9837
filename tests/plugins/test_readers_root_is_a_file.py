"""A `root:` that is a file is named as a file, not as a missing folder, by every
registered dataset type that takes a root, and the error names the entry's key."""

from __future__ import annotations

import pytest

from robustbench_x.api import load_factory
from robustbench_x.errors import ConfigError
from robustbench_x.registry import get_registry

TYPES = sorted(s.name for s in get_registry().specs("datasets") if "root" in s.required_keys)


@pytest.mark.parametrize("type_name", TYPES)
def test_a_root_that_is_a_file_says_it_is_a_file(tmp_path, type_name):
    spec = get_registry().get("datasets", type_name)
    (tmp_path / "afile").write_text("not a folder")
    options = {key: "afile" for key in spec.required_keys}
    with pytest.raises(ConfigError) as info:
        load_factory(spec.factory)(name="mine", options=options, config_file=str(tmp_path / "datasets.yaml"))
    text = str(info.value)
    assert "file" in text.replace(str(tmp_path / "datasets.yaml"), "") and "does not exist" not in text, text
    assert info.value.key in ("root", "datasets.mine.root"), text
