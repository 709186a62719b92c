"""The README demo (examples/qat_digits.py), shortened: QAT int8 accuracy within one
point of the float model trained the same way."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_qat_digits_int8_within_one_point_of_float():
    path = Path(__file__).resolve().parents[2] / "examples" / "qat_digits.py"
    spec = importlib.util.spec_from_file_location("qat_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(epochs=6, verbose=True)
    print(result)
    assert result["float_accuracy"] > 0.9
    assert abs(result["int8_accuracy"] - result["float_accuracy"]) <= 0.01
    assert result["int8_bytes"] < result["float_bytes"]
