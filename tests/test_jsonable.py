"""jsonable: the JSON form of the values modules, tools and records hand over."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from llmagentos._json import jsonable


@pytest.mark.parametrize(
    "value", [b"\x00\xffraw", bytearray(b"\x00\xffraw"), memoryview(b"\x00\xffraw")]
)
def test_bytes_become_their_base64_text(value):
    text = jsonable({"data": value})["data"]
    assert base64.b64decode(text) == b"\x00\xffraw"
    assert json.loads(json.dumps(jsonable([value]))) == [text]


def test_a_strided_view_is_its_bytes_in_order():
    view = memoryview(np.arange(6, dtype=np.uint8))[::2]
    assert base64.b64decode(jsonable(view)) == bytes([0, 2, 4])


def test_a_value_with_no_json_form_is_refused_naming_its_type():
    with pytest.raises(TypeError, match="value of type object"):
        jsonable({"x": [object()]})
